"""Hand-built tiny scenes and a ground-truth warp for the generator's physics tests."""

from __future__ import annotations

import cv2
import numpy as np

from polstereo.data.synthetic.geometry import Convex, Plane
from polstereo.data.synthetic.scene import Environment, Material, Scene, SceneObject, StereoRig
from polstereo.data.synthetic.textures import Texture


def warp_right_to_left(image: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """``right(x - d, y)`` sampled bilinearly: the right view seen through the left ground truth."""
    h, w = disparity.shape
    xs = (np.arange(w, dtype=np.float32)[None] - np.nan_to_num(disparity)).astype(np.float32)
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    return cv2.remap(image.astype(np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def away_from_depth_edges(disparity: np.ndarray, margin: int = 2, jump: float = 0.5) -> np.ndarray:
    """True where no disparity jump larger than ``jump`` px lies within ``margin`` pixels."""
    d = np.nan_to_num(disparity)
    edges = (np.abs(np.diff(d, axis=0, prepend=d[:1])) > jump) | (np.abs(np.diff(d, axis=1, prepend=d[:, :1])) > jump)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.dilate(edges.astype(np.uint8), kernel) == 0


def checker_texture(rig: StereoRig, depth: float, feature_px: float, dark: float = 0.1, light: float = 0.9) -> Texture:
    """A crisp high-contrast checker of ``feature_px`` squares at ``depth``, without noise detail."""
    return Texture("checker", feature_m=feature_px * depth / rig.focal_px, rotation=np.eye(3), offset=np.zeros(3),
                   color0=np.array([dark]), color1=np.array([light]), sharpness=3.0, detail=0.0, planar=True)


def wall(rig: StereoRig, disparity: float, normal=(0.0, 0.0, -1.0), texture: Texture | None = None) -> SceneObject:
    """A diffuse plane through the optical axis at the depth of ``disparity``."""
    depth = rig.depth_for_disparity(disparity)
    texture = texture or checker_texture(rig, depth, 6.0)
    return SceneObject(Plane.through([0.0, 0.0, depth], normal), Material("diffuse", texture), "wall")


def sphere(rig: StereoRig, near_disparity: float, radius: float, material: Material) -> SceneObject:
    """A sphere on the optical axis whose nearest point lies at ``near_disparity``."""
    depth = rig.depth_for_disparity(near_disparity) + radius
    return SceneObject(Convex("ellipsoid", np.array([0.0, 0.0, depth]), np.eye(3), np.full(3, radius)), material,
                       "sphere")


def structured_environment() -> Environment:
    """Dim surround, a sky band and two bright windows (behind and beside the camera)."""
    return Environment(surround=np.array([0.2], np.float32), sky=np.array([0.8], np.float32), sky_elevation=0.3,
                       windows=np.array([[2.5, 3.5, -0.2, 0.5], [-2.0, -1.2, 0.0, 0.6]]),
                       window_radiance=np.array([[3.0], [2.0]], np.float32))


def scene_of(rig: StereoRig, *objects: SceneObject, environment: Environment | None = None) -> Scene:
    """A mono scene lit by one distant light from the upper left behind the camera."""
    env = environment or structured_environment()
    light = np.array([[0.3, -0.5, -0.8]], np.float32)
    return Scene(rig, tuple(objects), env, light / np.linalg.norm(light), np.array([[0.8]], np.float32),
                 env.mean_radiance())


MITSUBA_SIZE, MITSUBA_FOV = (48, 32), 40.0


def mitsuba_stokes(objects: dict, max_depth: int, spp: int, size: tuple[int, int] = MITSUBA_SIZE,
                   fov: float = MITSUBA_FOV) -> np.ndarray:
    """``(3, H, W)`` Stokes S0, S1, S2 (mean over wavelengths) of Mitsuba 3's stokes integrator,
    the camera 4 units from the origin looking at it down -z; ``objects`` are scene entries
    (callables get ``mitsuba.ScalarTransform4f``). Skips the test without Mitsuba."""
    import pytest

    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_spectral_polarized")  # the llvm_* variants crash on these machines
    width, height = size
    t = mi.ScalarTransform4f
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "stokes", "integrator": {"type": "path", "max_depth": max_depth}},
        "sensor": {"type": "perspective", "fov": fov,
                   "to_world": t().look_at(origin=[0, 0, 4], target=[0, 0, 0], up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": width, "height": height, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": spp}},
        **{name: entry(t) if callable(entry) else entry for name, entry in objects.items()},
    })
    mi.render(scene, seed=1)
    channels = dict(scene.sensors()[0].film().bitmap(raw=False).split())
    return np.stack([np.array(channels[name]).mean(axis=-1) for name in ("S0", "S1", "S2")])
