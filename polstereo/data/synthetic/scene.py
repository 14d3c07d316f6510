"""Scene description (rig, surfaces, materials, lighting) and the random scene sampler.

Frame: the left camera's, in metres: x right, y down, z forward (the optical axis);
the right camera sits at (+baseline, 0, 0) with the same orientation, so a point at
depth Z appears in the right image ``d = f·B/Z`` pixels to the left of where the left
image shows it (left x matches right x - d).

Scenes are laid out in disparity rather than metres (an object's nearest point is
placed at a drawn disparity), so the configured disparity range holds for any focal
length and baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from polstereo.data.synthetic.config import LIGHTING_FAMILIES, SyntheticConfig
from polstereo.data.synthetic.geometry import FACING, Convex, Hollow, Plane, yaw_pitch
from polstereo.data.synthetic.optics import dot
from polstereo.data.synthetic.textures import PATTERNS, PhotoTexture, Texture

MATERIAL_KINDS = ("diffuse", "glossy", "glass")
# what a sample records about its glass (the HDF5 attribute glass_kinds, docs/format.md):
# "solid-<shape>" for --glass solid, "thin-<vessel>" for --glass thin, "pane" and "slab"
GLASS_OBJECT_KINDS = ("solid-sphere", "solid-ellipsoid", "solid-cylinder", "solid-box", "solid-prism", "thin-cup",
                      "thin-jar", "thin-bottle", "thin-bowl", "thin-vase", "pane", "slab")
# the lighting family of the versions before SyntheticConfig.lighting (the HDF5 attribute lighting):
# random distant lights plus a room-like environment of windows, sky and lamps
LIGHTING_FAMILY = "room-env"
PHOTO_SHARE_IN_MIX = 0.5  # textures="mix": the chance that a surface gets a photo rather than a pattern


@dataclass(frozen=True)
class StereoRig:
    """A rectified pinhole pair: pixel centres at integer coordinates, principal point at the image centre."""

    width: int
    height: int
    focal_px: float
    baseline_m: float

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0

    def origin(self, view: str) -> np.ndarray:
        """``(3, 1)`` camera centre of ``"left"`` or ``"right"``."""
        return np.array([[0.0], [0.0], [0.0]] if view == "left" else [[self.baseline_m], [0.0], [0.0]],
                        dtype=np.float32)

    def ray_directions(self) -> np.ndarray:
        """``(3, H*W)`` float32 unit ray directions, row-major pixels (same for both views)."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        d = np.stack([(u - self.cx) / self.focal_px, (v - self.cy) / self.focal_px, np.ones_like(u)])
        d = d.reshape(3, -1)
        return (d / np.sqrt(dot(d, d))).astype(np.float32)

    def depth_for_disparity(self, disparity: float) -> float:
        return self.focal_px * self.baseline_m / disparity

    def backproject(self, x: float, y: float, depth: float) -> np.ndarray:
        """``(3,)`` point at ``depth`` (metres along z) seen at left pixel (x, y)."""
        return np.array([(x - self.cx) * depth / self.focal_px, (y - self.cy) * depth / self.focal_px, depth])


@dataclass(frozen=True)
class Material:
    """How a surface scatters light.

    ``diffuse``: Lambertian albedo from ``texture`` (0.5 grey without one), weakly polarized (diffuse Fresnel
    transmission with index ``ior``, scaled by ``depolarization`` for rough surfaces).
    ``glossy``: the same plus a mirror reflection of the environment of weight
    ``specular`` with Fresnel reflectance (a clear coat: strongly polarized near Brewster).
    ``glass``: a clear dielectric of index ``ior`` (a solid, a thin-walled vessel or a
    pane: the surface says which); ``tint`` ``(C,)`` scales light transmitted through it.
    ``thin_wall``: the glass is thin walls (a vessel, a pane). The Mueller renderer gives the
    partial reflection off the far side of the first wall the light its outer reflection
    sees (they leave parallel, a wall's thickness apart) and follows fewer internal
    reflections; the shared-plane renderer follows that reflection only for thin walls
    (out through the near side to the environment: a thin wall reflects about twice what
    its first surface does) and keeps the polarization of light through the far wall.
    """

    kind: str
    texture: Texture | PhotoTexture | None = None
    ior: float = 1.5
    specular: float = 0.0
    depolarization: float = 1.0
    tint: np.ndarray | None = None
    thin_wall: bool = False


@dataclass(frozen=True)
class SceneObject:
    """A surface and its material; ``glass_kind`` (:data:`GLASS_OBJECT_KINDS`) names a glass object's
    kind for the sample's record, ``""`` for anything else."""

    surface: Plane | Convex | Hollow
    material: Material
    name: str = ""
    glass_kind: str = ""


@dataclass(frozen=True)
class Environment:
    """Distant lighting as radiance per direction ``(C,)``: a dim surround (brighter above by
    ``gradient``), a sky band above ``sky_elevation`` (radians), bright rectangular windows
    (azimuth/elevation boxes, radians; also area lamps and ceiling panels) and small very bright
    lamps (discs around unit directions). Azimuth is atan2(x, z), elevation asin(-y).

    Uneven lighting is what makes glass polarize: under a uniform surround the
    reflected and transmitted parts of a clear solid nearly cancel.
    """

    surround: np.ndarray
    sky: np.ndarray
    sky_elevation: float
    windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    window_radiance: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    lamps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    lamp_cos: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lamp_radiance: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    gradient: float = 0.3  # the surround is (1 + gradient·up) x surround: brighter above

    @classmethod
    def uniform(cls, radiance: np.ndarray) -> "Environment":
        r = np.asarray(radiance, dtype=np.float32)
        return cls(surround=r, sky=np.zeros_like(r), sky_elevation=np.pi / 2)

    def radiance(self, d: np.ndarray) -> np.ndarray:
        """``(C, N)`` radiance arriving from unit directions ``d`` ``(3, N)``."""
        up = -d[1]  # image y points down, so "up" is -y
        elevation = np.arcsin(np.clip(up, -1.0, 1.0))
        # A soft sky edge (~6°) keeps reflections of the horizon from aliasing.
        sky = np.clip((elevation - self.sky_elevation) / 0.1 + 0.5, 0.0, 1.0)
        out = self.surround[:, None] * (1.0 + self.gradient * up)[None] + self.sky[:, None] * sky[None]
        # Python floats from tolist(): float64 numpy scalars would promote float32 rays.
        if len(self.windows):
            azimuth = np.arctan2(d[0], d[2])
            for (a0, a1, e0, e1), rad in zip(self.windows.tolist(), self.window_radiance):
                inside = _soft_box(azimuth, a0, a1) * _soft_box(elevation, e0, e1)
                out = out + rad[:, None] * inside[None]
        for direction, cos_r, rad in zip(self.lamps.tolist(), self.lamp_cos.tolist(), self.lamp_radiance):
            c = d[0] * direction[0] + d[1] * direction[1] + d[2] * direction[2]
            disc = np.clip((c - cos_r) / max(1.0 - cos_r, 1e-6) * 2.0, 0.0, 1.0)
            out = out + rad[:, None] * disc[None]
        return out.astype(np.float32)

    def mean_radiance(self) -> np.ndarray:
        """``(C,)`` rough average over the sphere: the ambient term of diffuse shading."""
        return (self.surround + 0.25 * self.sky).astype(np.float32)


def _soft_box(x: np.ndarray, lo: float, hi: float, edge: float = 0.03) -> np.ndarray:
    return np.clip((x - lo) / edge + 0.5, 0.0, 1.0) * np.clip((hi - x) / edge + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Scene:
    """Everything a view needs: surfaces, lighting and the rig.

    ``lights`` are distant lights: unit directions towards them ``(K, 3)`` and radiance
    ``(K, C)``; ``ambient`` ``(C,)`` is the diffuse share of the environment. ``lighting``
    names the lighting family for the sample's record (``""``: not said). ``polarization``
    is the renderer's model (:data:`~polstereo.data.synthetic.config.POLARIZATION_MODELS`):
    ``"mueller"`` (every interface in its own frame, reflections traced into the scene) or
    ``"shared-plane"`` (the generator before it).
    """

    rig: StereoRig
    objects: tuple[SceneObject, ...]
    environment: Environment
    light_dirs: np.ndarray
    light_radiance: np.ndarray
    ambient: np.ndarray
    lighting: str = ""
    polarization: str = "mueller"

    @property
    def channels(self) -> int:
        return int(np.asarray(self.ambient).shape[0])


# ---------------------------------------------------------------------------- sampling
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (columns: rotated axes)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_colors(rng: np.random.Generator, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two albedos ``(C,)`` with clear contrast, so every texture gives matching something to find."""
    dark = rng.uniform(0.05, 0.4)
    light = rng.uniform(dark + 0.25, 0.95)
    if rng.random() < 0.5:
        dark, light = light, dark
    if channels == 1:
        return np.array([dark]), np.array([light])
    tint0, tint1 = rng.uniform(0.6, 1.0, 3), rng.uniform(0.6, 1.0, 3)
    return dark * tint0 / tint0.max(), light * tint1 / tint1.max()


def random_texture(rng: np.random.Generator, depth_m: float, rig: StereoRig, channels: int,
                   planar: bool) -> Texture:
    """A random texture whose coarsest features span 5-40 pixels at ``depth_m``."""
    feature_px = float(np.exp(rng.uniform(np.log(5.0), np.log(40.0))))
    c0, c1 = _random_colors(rng, channels)
    return Texture(
        pattern=str(rng.choice(PATTERNS)),
        feature_m=feature_px * depth_m / rig.focal_px,
        rotation=random_rotation(rng),
        offset=rng.uniform(-50, 50, 3),
        color0=c0, color1=c1,
        sharpness=float(rng.uniform(1.0, 3.5)),
        detail=float(rng.uniform(0.15, 0.45)),
        planar=planar,
    )


def random_photo_texture(rng: np.random.Generator, photos, depth_m: float, rig: StereoRig, channels: int,
                         extent: np.ndarray | None = None) -> PhotoTexture:
    """A random square crop of one of ``photos`` (:class:`~polstereo.data.synthetic.photos.Photo`),
    rotated, spanning 60-400 pixels at ``depth_m`` (its coarsest structures, about an
    eighth of it, span 8-50 px like the procedural features), its 2nd-98th percentiles
    stretched to [0, 1] (at most 4x; a dull crop is centred on 0.5), as albedo between a
    dark level of 0.05-0.4 and a light one at least 0.25 above it; in RGB mode a colour
    photo keeps its colours, a grey one is tinted. ``extent``: a solid's semi-axes
    (triplanar mapping), None for a plane."""
    photo = photos[int(rng.integers(len(photos)))]
    width, height = photo.size
    side = float(rng.uniform(0.35, 1.0)) * (min(width, height) - 1)
    x0 = float(rng.uniform(0.0, width - 1 - side))
    y0 = float(rng.uniform(0.0, height - 1 - side))
    span_px = float(np.exp(rng.uniform(np.log(60.0), np.log(400.0))))
    # the crop's contrast, measured on the first mip level where it is at most 32 px wide
    level = min(max(int(np.ceil(np.log2(side / 32.0))), 0), len(photo.levels) - 1)
    f = 0.5 ** level
    window = photo.levels[level][int(y0 * f):int(np.ceil((y0 + side) * f)) + 1,
                                 int(x0 * f):int(np.ceil((x0 + side) * f)) + 1]
    low, high = np.percentile(window, [2.0, 98.0])
    dark = rng.uniform(0.05, 0.4)
    light = rng.uniform(dark + 0.25, 0.95)
    if channels == 1 or photo.levels[0].shape[2] == 3:
        color0, color1 = np.full(channels, dark), np.full(channels, light)
    else:
        tint0, tint1 = rng.uniform(0.6, 1.0, 3), rng.uniform(0.6, 1.0, 3)
        color0, color1 = dark * tint0 / tint0.max(), light * tint1 / tint1.max()
    return PhotoTexture(
        levels=photo.levels, name=photo.name, crop=(x0, y0, side, side),
        texel_m=span_px * depth_m / rig.focal_px / side,
        angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        offset=rng.uniform(0.0, 2.0 * side, 2),
        stretch=(float(min(low, 0.5 * (low + high) - 0.125)), float(max(high - low, 0.25))),
        color0=color0, color1=color1,
        extent=None if extent is None else np.asarray(extent, dtype=np.float64),
    )


def random_environment(rng: np.random.Generator, channels: int) -> Environment:
    """A room-like environment: dim surround, sky band, 1-4 windows, 0-3 lamps, all around."""
    def tint(level: float) -> np.ndarray:
        return level * (np.ones(1) if channels == 1 else rng.uniform(0.8, 1.2, 3))

    n_win = int(rng.integers(1, 5))
    az = rng.uniform(-np.pi, np.pi, n_win)
    width = rng.uniform(0.15, 0.8, n_win)
    el = rng.uniform(-0.3, 0.9, n_win)
    height = rng.uniform(0.15, 0.7, n_win)
    windows = np.stack([az - width / 2, az + width / 2, el - height / 2, el + height / 2], axis=1)
    n_lamp = int(rng.integers(0, 4))
    lamps = rng.standard_normal((n_lamp, 3))
    lamps[:, 1] = -np.abs(lamps[:, 1])  # lamps hang above the horizon
    lamps /= np.linalg.norm(lamps, axis=1, keepdims=True) + 1e-12
    return Environment(
        surround=tint(rng.uniform(0.08, 0.3)).astype(np.float32),
        sky=tint(rng.uniform(0.3, 1.2)).astype(np.float32),
        sky_elevation=float(rng.uniform(0.1, 0.7)),
        windows=windows,
        window_radiance=np.stack([tint(rng.uniform(1.0, 4.0)) for _ in range(n_win)]).astype(np.float32),
        lamps=lamps,
        lamp_cos=np.cos(rng.uniform(0.03, 0.1, n_lamp)),
        lamp_radiance=np.array([tint(rng.uniform(4.0, 15.0)) for _ in range(n_lamp)],
                               dtype=np.float32).reshape(n_lamp, channels),
    )


def direction_of(azimuth: float, elevation: float) -> np.ndarray:
    """``(3,)`` unit direction of ``azimuth`` (atan2(x, z), radians) and ``elevation`` (asin(-y))."""
    return np.array([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])


def emitter_lights(environment: Environment) -> tuple[np.ndarray, np.ndarray]:
    """Distant lights ``(K, 3)`` (unit directions towards them) and their strengths ``(K, C)`` that
    stand for the windows (boxes) of ``environment`` in diffuse shading: radiance x solid angle / π,
    so that a white Lambertian surface facing one shows the radiance it would in a path tracer."""
    dirs, strengths = [], []
    for (a0, a1, e0, e1), radiance in zip(environment.windows.tolist(), environment.window_radiance):
        e0, e1 = max(e0, -np.pi / 2), min(e1, np.pi / 2)
        solid_angle = (a1 - a0) * (np.sin(e1) - np.sin(e0))
        dirs.append(direction_of(0.5 * (a0 + a1), 0.5 * (e0 + e1)))
        strengths.append(radiance * solid_angle / np.pi)
    channels = len(environment.surround)
    return (np.array(dirs, dtype=np.float32).reshape(-1, 3),
            np.array(strengths, dtype=np.float32).reshape(-1, channels))


def random_lighting(rng: np.random.Generator, family: str, channels: int
                    ) -> tuple[Environment, np.ndarray, np.ndarray, np.ndarray]:
    """The environment, distant lights (directions ``(K, 3)``, strengths ``(K, C)``) and ambient
    term ``(C,)`` of one lighting ``family`` (:data:`LIGHTING_FAMILIES`):

    - ``window-env``: a dim room (0.05-0.2), a sky band (0.3-1) above 3-30° and 1-3 bright
      windows (3-12, 15-50° wide) anywhere around, the camera's side included;
    - ``area-lamp``: a dark room (0.02-0.1) and 1-2 large lamps (6-20, 12-30° across) on the
      camera's side, 15-70° up;
    - ``overhead``: a dim room (0.03-0.12) and 1-4 ceiling panels (5-15) 45-75° up;
    - ``uniform``: an even surround (0.5-1.2, at most 10 % brighter above) and nothing else:
      glass is barely polarized (its reflected and transmitted parts nearly cancel).

    The lamps and windows light diffuse surfaces as distant lights from where they are
    (:func:`emitter_lights`), so shading and reflections agree.
    """
    def tint(level: float) -> np.ndarray:
        return level * (np.ones(1) if channels == 1 else rng.uniform(0.85, 1.15, 3))

    def boxes(count: int, azimuth, elevation, width, height, radiance) -> tuple[np.ndarray, np.ndarray]:
        az, el = azimuth(count), elevation(count)
        half_w, half_h = width(count) / 2, height(count) / 2
        levels = np.stack([tint(r) for r in radiance(count)]).astype(np.float32)
        az = (az + np.pi) % (2 * np.pi) - np.pi
        windows, radiances = [], []
        for a, w, e, h, level in zip(az, half_w, el, half_h, levels):
            # a box across azimuth ±π is two boxes: Environment.radiance does not wrap
            if a - w < -np.pi:
                spans = ((-np.pi, a + w), (a - w + 2 * np.pi, np.pi))
            elif a + w > np.pi:
                spans = ((a - w, np.pi), (-np.pi, a + w - 2 * np.pi))
            else:
                spans = ((a - w, a + w),)
            for a0, a1 in spans:
                windows.append([a0, a1, e - h, e + h])
                radiances.append(level)
        return np.array(windows), np.array(radiances, dtype=np.float32)

    dark = np.zeros(channels, dtype=np.float32)
    if family == "uniform":
        env = Environment(surround=tint(rng.uniform(0.5, 1.2)).astype(np.float32), sky=dark, sky_elevation=np.pi / 2,
                          gradient=float(rng.uniform(0.0, 0.1)))
        return env, np.zeros((0, 3), np.float32), np.zeros((0, channels), np.float32), env.mean_radiance()
    if family == "window-env":
        surround, sky, sky_elevation = tint(rng.uniform(0.05, 0.2)), tint(rng.uniform(0.3, 1.0)), rng.uniform(0.05, 0.5)
        windows, radiance = boxes(int(rng.integers(1, 4)), lambda n: rng.uniform(-np.pi, np.pi, n),
                                  lambda n: rng.uniform(0.0, 0.6, n), lambda n: rng.uniform(0.25, 0.9, n),
                                  lambda n: rng.uniform(0.25, 0.7, n), lambda n: rng.uniform(3.0, 12.0, n))
    elif family == "area-lamp":
        surround, sky, sky_elevation = tint(rng.uniform(0.02, 0.1)), dark, np.pi / 2
        windows, radiance = boxes(int(rng.integers(1, 3)), lambda n: np.pi + rng.uniform(-1.75, 1.75, n),
                                  lambda n: rng.uniform(0.25, 1.2, n), lambda n: rng.uniform(0.2, 0.5, n),
                                  lambda n: rng.uniform(0.2, 0.5, n), lambda n: rng.uniform(6.0, 20.0, n))
    elif family == "overhead":
        surround, sky, sky_elevation = tint(rng.uniform(0.03, 0.12)), dark, np.pi / 2
        windows, radiance = boxes(int(rng.integers(1, 5)), lambda n: rng.uniform(-np.pi, np.pi, n),
                                  lambda n: rng.uniform(0.8, 1.3, n), lambda n: rng.uniform(0.3, 1.0, n),
                                  lambda n: rng.uniform(0.1, 0.3, n), lambda n: rng.uniform(5.0, 15.0, n))
    else:
        raise ValueError(f"unknown lighting family {family!r}; known: {', '.join(LIGHTING_FAMILIES)}")
    env = Environment(surround=surround.astype(np.float32), sky=np.asarray(sky, np.float32),
                      sky_elevation=float(sky_elevation), windows=windows, window_radiance=radiance)
    light_dirs, light_radiance = emitter_lights(env)
    return env, light_dirs, light_radiance, env.mean_radiance()


def _place_convex(rng: np.random.Generator, rig: StereoRig, shape: str, near_disparity: float,
                  radius_px: float, aspect: tuple[float, float]) -> Convex:
    """A convex solid whose nearest point lies at about ``near_disparity`` at a random image position."""
    x = rng.uniform(0.05, 0.95) * (rig.width - 1)
    y = rng.uniform(0.05, 0.95) * (rig.height - 1)
    near_depth = rig.depth_for_disparity(near_disparity)
    radius = radius_px * near_depth / rig.focal_px
    size = radius * rng.uniform(*aspect, 3) if rng.random() < 0.6 or shape != "ellipsoid" else radius * np.ones(3)
    probe = Convex(shape, np.zeros(3), np.eye(3), size)
    # The bounding radius keeps the nearest point no closer than near_depth.
    center = rig.backproject(x, y, near_depth + probe.bounding_radius)
    return Convex(shape, center, random_rotation(rng), size)


# ------------------------------------------------------------------ thin-walled glass
VESSELS = ("cup", "jar", "bottle", "bowl", "vase")
# local frame of a standing vessel -> camera frame: local z (the vessel's axis) is image-up
# (-y), local y points away from the camera
_UPRIGHT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def vessel(kind: str, center: np.ndarray, rotation: np.ndarray, radius: float, height: float,
           wall: float, opening: float = 0.5) -> Hollow:
    """A thin-walled glass vessel around local axis z (its up), walls ``wall`` metres thick.

    ``kind`` (:data:`VESSELS`): ``cup`` an open cylinder of half height ``height``;
    ``jar`` a closed one; ``bottle`` a jar with a round mouth of ``opening`` x ``radius``
    in its top; ``bowl`` the lower part of an ellipsoid (semi-axes ``radius``, ``radius``,
    ``height``) cut open a little above its middle; ``vase`` an ellipsoid with a mouth of
    ``opening`` x ``radius`` on top. Bottoms are twice as thick as the walls.
    """
    def part(shape: str, local_center, size) -> Convex:
        return Convex(shape, center + rotation @ np.asarray(local_center, dtype=np.float64), rotation,
                      np.asarray(size, dtype=np.float64))

    r, h, w = radius, height, wall
    if kind in ("cup", "jar", "bottle"):
        outer = part("cylinder", (0, 0, 0), (r, r, h))
        if kind == "cup":  # the cavity reaches out through the top
            bottom, top = -h + 2 * w, h + r
            holes = (part("cylinder", (0, 0, (bottom + top) / 2), (r - w, r - w, (top - bottom) / 2)),)
        else:
            holes = (part("cylinder", (0, 0, w / 2), (r - w, r - w, h - 1.5 * w)),)
            if kind == "bottle":
                holes += (part("cylinder", (0, 0, h), (opening * r, opening * r, h)),)
    elif kind in ("bowl", "vase"):
        outer = part("ellipsoid", (0, 0, 0), (r, r, h))
        holes = (part("ellipsoid", (0, 0, 0), (r - w, r - w, h - 2 * w)),)
        if kind == "bowl":  # everything above a cut plane at 0.2 h is open
            holes += (part("box", (0, 0, 0.2 * h + 2 * r), (2 * r, 2 * r, 2 * r)),)
        else:
            holes += (part("cylinder", (0, 0, h), (opening * r, opening * r, h)),)
    else:
        raise ValueError(f"unknown vessel {kind!r}; known: {', '.join(VESSELS)}")
    return Hollow(outer, holes)


def _place_vessel(rng: np.random.Generator, rig: StereoRig, near_disparity: float,
                  radius_px: float) -> tuple[Hollow, str]:
    """A standing thin-walled vessel (tipped -0.2..0.7 rad towards the camera, so some are
    seen from above) whose nearest point lies at about ``near_disparity``, and its kind (:data:`VESSELS`)."""
    kind = str(rng.choice(VESSELS))
    x = rng.uniform(0.05, 0.95) * (rig.width - 1)
    y = rng.uniform(0.05, 0.95) * (rig.height - 1)
    near_depth = rig.depth_for_disparity(near_disparity)
    radius = radius_px * near_depth / rig.focal_px
    height = radius * (rng.uniform(0.5, 0.9) if kind == "bowl" else rng.uniform(0.9, 2.2))
    wall = radius * rng.uniform(0.03, 0.08)
    rotation = _rot_x(rng.uniform(-0.2, 0.7)) @ _rot_z(rng.uniform(-0.15, 0.15)) @ _UPRIGHT
    probe = Convex("cylinder" if kind in ("cup", "jar", "bottle") else "ellipsoid", np.zeros(3), np.eye(3),
                   np.array([radius, radius, height]))
    center = rig.backproject(x, y, near_depth + probe.bounding_radius)
    return vessel(kind, center, rotation, radius, height, wall, opening=float(rng.uniform(0.3, 0.6))), kind


# SyntheticConfig.pane_orientation "any": a third of the panes and slabs near Brewster's angle to the
# view ray (within a few degrees), a third strongly tilted, a third anywhere from head-on to 50°
BREWSTER_SPREAD = np.radians(3.0)
STRONG_TILT = (np.radians(60.0), np.radians(80.0))
MODERATE_TILT = (0.0, np.radians(50.0))
PANE_THICKNESS = (0.01, 0.04)   # of the half-size
SLAB_THICKNESS = (0.08, 0.25)


def tilted_rotation(rng: np.random.Generator, view: np.ndarray, ior: float) -> tuple[np.ndarray, float]:
    """A random rotation whose local x axis (a flat object's normal) makes a drawn angle with the
    unit ``view`` ray (:data:`BREWSTER_SPREAD` around Brewster's angle arctan(``ior``), strongly
    tilted or moderately, a third each), turned any way about the ray (so both yaw and pitch) and
    rolled any way in its own plane; and that angle (radians)."""
    draw = rng.random()
    if draw < 1 / 3:
        tilt = float(np.arctan(ior) + rng.normal(0.0, BREWSTER_SPREAD))
    elif draw < 2 / 3:
        tilt = float(rng.uniform(*STRONG_TILT))
    else:
        tilt = float(rng.uniform(*MODERATE_TILT))
    turn, roll = rng.uniform(0.0, 2 * np.pi, 2)
    side = np.cross(view, [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    up = np.cross(view, side)
    normal = -np.cos(tilt) * view + np.sin(tilt) * (np.cos(turn) * side + np.sin(turn) * up)
    helper = np.cross(normal, up if abs(normal @ up) < 0.9 else side)
    in_plane = helper / np.linalg.norm(helper)
    in_plane = np.cos(roll) * in_plane + np.sin(roll) * np.cross(normal, in_plane)
    return np.stack([normal, in_plane, np.cross(normal, in_plane)], axis=1), tilt


def _place_flat(rng: np.random.Generator, rig: StereoRig, near_disparity: float, half_px: float,
                thickness: tuple[float, float], ior: float | None) -> Convex:
    """A pane or slab (``thickness``: a range, of its half-size) whose nearest point lies at about
    ``near_disparity``: at any orientation (:func:`tilted_rotation`, drawn for refractive index
    ``ior``) or, with ``ior`` None, facing the camera within ±0.9 rad of yaw and ±0.3 rad of pitch
    (the panes of earlier versions)."""
    x = rng.uniform(0.1, 0.9) * (rig.width - 1)
    y = rng.uniform(0.1, 0.9) * (rig.height - 1)
    near_depth = rig.depth_for_disparity(near_disparity)
    half = half_px * near_depth / rig.focal_px
    size = np.array([half * rng.uniform(*thickness), half * rng.uniform(0.6, 1.2), half * rng.uniform(0.6, 1.2)])
    if ior is None:
        rotation = yaw_pitch(rng.uniform(-0.9, 0.9), rng.uniform(-0.3, 0.3)) @ FACING
    else:
        view = rig.backproject(x, y, 1.0)
        rotation, _ = tilted_rotation(rng, view / np.linalg.norm(view), ior)
    reach = float(np.abs(rotation[2]) @ size)  # the box's depth extent from its centre
    return Convex("box", rig.backproject(x, y, near_depth + reach), rotation, size)


def random_scene(config: SyntheticConfig, rng: np.random.Generator) -> Scene:
    """Draw one scene: background wall (+ floor), opaque objects, glass objects, lighting."""
    rig = StereoRig(config.width, config.height, config.focal, config.baseline_m)
    texture = _surface_textures(config, rng, rig)
    wall, wall_disp, wall_near_disp = _random_wall(rng, rig, config.disparity_range, texture)
    objects = [wall]
    if rng.random() < 0.5:
        objects.append(_random_floor(rng, rig, config.disparity_range[1], wall_near_disp, texture))
    objects += _random_opaque_objects(config, rng, rig, wall_disp, texture)
    objects += _random_glass_objects(config, rng, rig, wall_disp)
    # one family draws nothing, so lighting ("room-env",) makes the scenes made before the option existed
    family = config.lighting[0] if len(config.lighting) == 1 else str(rng.choice(config.lighting))
    if family == LIGHTING_FAMILY:
        lighting = _room_env_lighting(rng, config.channels)
    else:
        lighting = random_lighting(rng, family, config.channels)
    return Scene(rig, tuple(objects), *lighting, family, config.polarization)


_SurfaceTextures = Callable[..., "Texture | PhotoTexture"]  # draws a texture: see _surface_textures


def _surface_textures(config: SyntheticConfig, rng: np.random.Generator, rig: StereoRig) -> _SurfaceTextures:
    """How a scene's walls, floors and opaque objects are textured: ``texture(depth_m, planar,
    extent=None)`` draws a procedural pattern or (``config.textures``) a photograph for a surface
    at ``depth_m`` metres (a photo on a solid spans ``extent``)."""
    photos = None
    if config.textures != "procedural":
        from polstereo.data.synthetic.photos import photo_library
        photos = photo_library(config.texture_dir, config.channels)

    def texture(depth_m: float, planar: bool, extent: np.ndarray | None = None) -> Texture | PhotoTexture:
        # procedural textures alone draw nothing more, so they make the scenes made before photos existed
        if photos is not None and (config.textures == "photo" or rng.random() < PHOTO_SHARE_IN_MIX):
            return random_photo_texture(rng, photos, depth_m, rig, config.channels, None if planar else extent)
        return random_texture(rng, depth_m, rig, config.channels, planar)

    return texture


def _random_wall(rng: np.random.Generator, rig: StereoRig, disparity_range: tuple[float, float],
                 texture: _SurfaceTextures) -> tuple[SceneObject, float, float]:
    """The background wall, fronto-parallel or slanted, far (small disparity), and its disparity
    at the image centre and at its nearest image corner."""
    d_min, d_max = disparity_range
    fronto = np.array([0.0, 0.0, -1.0])
    normal = fronto if rng.random() < 0.4 else yaw_pitch(rng.uniform(-0.6, 0.6), rng.uniform(-0.35, 0.35)) @ fronto
    wall_min_disp = rng.uniform(d_min, d_min + 0.2 * (d_max - d_min))
    # A plane's disparity is affine in the image, d0·(n·r)/n_z for ray r = (x', y', 1): scale
    # the centre disparity d0 so that the far corner sits at the drawn minimum.
    corners = np.array([[x / rig.focal_px, y / rig.focal_px, 1.0]
                        for x in (-rig.cx, rig.cx) for y in (-rig.cy, rig.cy)])
    ratios = (corners @ normal) / normal[2]
    if wall_min_disp * ratios.max() / ratios.min() > 0.9 * d_max:  # too slanted for a narrow range
        normal, ratios = fronto, np.ones(4)
    wall_disp = wall_min_disp / ratios.min()
    wall_near_disp = wall_disp * ratios.max()
    wall_depth = rig.depth_for_disparity(wall_disp)
    wall = SceneObject(Plane.through([0.0, 0.0, wall_depth], normal), _diffuse(rng, texture(wall_depth, True)), "wall")
    return wall, wall_disp, wall_near_disp


def _random_floor(rng: np.random.Generator, rig: StereoRig, d_max: float, wall_near_disp: float,
                  texture: _SurfaceTextures) -> SceneObject:
    """A floor whose nearest visible row (the bottom one) is at a drawn disparity nearer than the
    wall's nearest point and below ``d_max``."""
    bottom_slope = (rig.height - 1 - rig.cy) / rig.focal_px
    floor_disp = _uniform(rng, max(wall_near_disp * 1.2, 0.3 * d_max), 0.8 * d_max)
    height = bottom_slope * rig.focal_px * rig.baseline_m / floor_disp
    normal = yaw_pitch(0.0, rng.uniform(-0.08, 0.08)) @ np.array([0.0, -1.0, 0.0])
    floor_depth = rig.depth_for_disparity(floor_disp)
    return SceneObject(Plane.through([0.0, height, 0.0], normal), _diffuse(rng, texture(floor_depth, True)), "floor")


def _random_opaque_objects(config: SyntheticConfig, rng: np.random.Generator, rig: StereoRig, wall_disp: float,
                           texture: _SurfaceTextures) -> list[SceneObject]:
    """``config.opaque`` diffuse or (``config.glossy_fraction``) glossy solids in front of the wall."""
    d_max = config.disparity_range[1]
    near_lo = wall_disp + 0.15 * (d_max - wall_disp)
    objects = []
    for i in range(int(rng.integers(config.opaque[0], config.opaque[1] + 1))):
        shape = str(rng.choice(("ellipsoid", "box", "box", "cylinder")))
        disp = _uniform(rng, near_lo, 0.92 * d_max)
        solid = _place_convex(rng, rig, shape, disp, rng.uniform(0.04, 0.16) * rig.width, (0.5, 1.3))
        depth = float(solid.center[2])
        surface_texture = texture(depth, False, solid.size)
        if rng.random() < config.glossy_fraction:
            material = Material("glossy", surface_texture, ior=float(rng.uniform(1.4, 1.7)),
                                specular=float(rng.uniform(0.5, 1.0)), depolarization=float(rng.uniform(0.3, 1.0)))
        else:
            material = _diffuse(rng, surface_texture)
        objects.append(SceneObject(solid, material, f"opaque{i}"))
    return objects


def _random_glass_objects(config: SyntheticConfig, rng: np.random.Generator, rig: StereoRig,
                          wall_disp: float) -> list[SceneObject]:
    """``config.transparent`` glass objects in front of the wall, each of a kind drawn from ``config.glass``."""
    near_lo = wall_disp + 0.25 * (config.disparity_range[1] - wall_disp)
    objects = []
    for i in range(int(rng.integers(config.transparent[0], config.transparent[1] + 1))):
        # one kind draws nothing, so --glass solid makes the scenes made before the option existed
        kind = config.glass[0] if len(config.glass) == 1 else str(rng.choice(config.glass))
        solid, glass_kind, ior = _place_glass(config, rng, rig, kind, near_lo)
        channels = config.channels
        tint = np.ones(channels) if rng.random() < 0.7 or channels == 1 else rng.uniform(0.8, 1.0, channels)
        material = Material("glass", ior=float(rng.uniform(*config.ior_range)) if ior is None else ior,
                            tint=(tint * rng.uniform(0.9, 1.0)).astype(np.float32), thin_wall=kind in ("thin", "pane"))
        objects.append(SceneObject(solid, material, f"glass{i}", glass_kind))
    return objects


def _place_glass(config: SyntheticConfig, rng: np.random.Generator, rig: StereoRig, kind: str,
                 near_lo: float) -> tuple[Convex | Hollow, str, float | None]:
    """A glass object of ``kind`` (:data:`~polstereo.data.synthetic.config.GLASS_KINDS`), its nearest
    point drawn between disparities ``near_lo`` and 95 % of the largest: its shape, the kind the
    sample records (:data:`GLASS_OBJECT_KINDS`) and the refractive index the placement drew
    (None: drawn with the material)."""
    d_max = config.disparity_range[1]
    if kind == "solid":
        shapes = ("ellipsoid", "ellipsoid", "cylinder", "box") + (("prism",) if config.prisms else ())
        shape = str(rng.choice(shapes))
        disp = _uniform(rng, near_lo, 0.95 * d_max)
        solid = _place_convex(rng, rig, shape, disp, rng.uniform(0.07, 0.22) * rig.width, (0.6, 1.4))
        # _place_convex makes 40 % of the ellipsoids round (equal semi-axes): spheres
        round_ = shape == "ellipsoid" and bool(np.all(solid.size == solid.size[0]))
        return solid, f"solid-{'sphere' if round_ else shape}", None
    if kind == "thin":
        solid, vessel_kind = _place_vessel(rng, rig, _uniform(rng, near_lo, 0.95 * d_max),
                                           rng.uniform(0.07, 0.2) * rig.width)
        return solid, f"thin-{vessel_kind}", None
    # a pane, or a slab (a thick one)
    disp = _uniform(rng, near_lo, 0.95 * d_max)
    half_px = rng.uniform(0.15, 0.35) * rig.width if kind == "pane" else rng.uniform(0.1, 0.25) * rig.width
    thickness = PANE_THICKNESS if kind == "pane" else SLAB_THICKNESS
    ior = float(rng.uniform(*config.ior_range)) if config.pane_orientation == "any" else None
    return _place_flat(rng, rig, disp, half_px, thickness, ior), kind, ior


def _room_env_lighting(rng: np.random.Generator, channels: int
                       ) -> tuple[Environment, np.ndarray, np.ndarray, np.ndarray]:
    """The lighting of the versions before the lighting families (:data:`LIGHTING_FAMILY`), as
    :func:`random_lighting` returns one: a room-like environment (:func:`random_environment`) and
    1-3 distant lights from above on the camera's side."""
    env = random_environment(rng, channels)
    n_lights = int(rng.integers(1, 4))
    light_dirs = rng.standard_normal((n_lights, 3))
    light_dirs[:, 1] = -np.abs(light_dirs[:, 1]) - 0.3   # from above
    light_dirs[:, 2] = -np.abs(light_dirs[:, 2]) - 0.2   # from the camera side
    light_dirs /= np.linalg.norm(light_dirs, axis=1, keepdims=True)
    light_rad = np.stack([rng.uniform(0.3, 1.0) * (np.ones(channels) if channels == 1 else rng.uniform(0.85, 1.15, 3))
                          for _ in range(n_lights)])
    return env, light_dirs.astype(np.float32), light_rad.astype(np.float32), env.mean_radiance()


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A uniform draw in [low, high], or ``high`` itself when a narrow range leaves low > high."""
    return float(rng.uniform(min(low, high), high))


def _diffuse(rng: np.random.Generator, texture: Texture | PhotoTexture) -> Material:
    return Material("diffuse", texture, ior=float(rng.uniform(1.4, 1.7)), depolarization=float(rng.uniform(0.3, 1.0)))
