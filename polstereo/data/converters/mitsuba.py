"""``mitsuba`` layout: polarized Mitsuba 3 renders, one Stokes EXR per view.

::

    SRC/<sample>/left.exr  right.exr    Stokes images (integrator "stokes")
                 [disparity.*]           disparity file, or
                 [depth.exr | depth.npy] depth (also read from a 'depth' channel of left.exr)
                 mask.png  [occlusion.png] [valid.png]
                 [meta.json: focal_px, baseline_m, scene_id, glass_kinds, lighting]

Stokes channels ``S0.R`` ... ``S2.B`` after the film's own (``S0``/``S0.Y`` ... for mono;
13 to 16 unnamed channels: the film's, then the 12 Stokes ones). ``depth.T`` is distance
along the camera ray, converted to planar Z (``depth_kind="range"``, the default). With
``focal_px`` the Stokes images are re-expressed from Mitsuba's per-ray frame in
polstereo's image convention (:func:`mitsuba_stokes_to_image`); without it Mitsuba's frame
is kept, with a warning. Angle images I(θ) = ½(S0 + S1 cos 2θ + S2 sin 2θ) ≥ 0, θ in
degrees, float32 in the render's radiance units. Channels, frames and depth:
docs/convert.md#mitsuba.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from polstereo.data.converters.base import (
    BAD_VALUES, GROUND_TRUTH_ROLES, MISSING, SIZE_MISMATCH, Converter, FileRole, SkipSample, read_meta,
)
from polstereo.errors import PolstereoError
from polstereo.io.images import read_disparity, read_exr, read_image

NUM_STOKES_CHANNELS = 12  # S0..S3 x (R, G, B)
FILM_CHANNEL_NAMES = {"R", "G", "B", "A", "Y"}
DEPTH_KINDS = ("range", "z")
NO_FOCAL_WARNING = ("mitsuba: no focal_px (meta.json or --focal-px): Stokes images are kept in Mitsuba's "
                    "per-ray frame, so AoLP is off by up to several degrees away from the image centre")


def _stokes_names(channels: dict[str, np.ndarray]) -> list[list[str]] | None:
    """Channel names of S0, S1, S2, one list of colour channels each; None if absent."""
    candidates = [[[f"S{k}.{c}" for c in "RGB"] for k in range(3)]]
    candidates += [[[f"S{k}{suffix}"] for k in range(3)] for suffix in (".Y", "")]
    return next((names for names in candidates if all(n in channels for row in names for n in row)), None)


def stokes_from_channels(channels: dict[str, np.ndarray], where: str = "") -> np.ndarray:
    """Linear Stokes ``(3, C, H, W)`` float32 (S0, S1, S2; C = 3 RGB or 1) from EXR channels."""
    names = _stokes_names(channels)
    if names is not None:
        return np.stack([np.stack([channels[n] for n in row]) for row in names]).astype(np.float32)
    unnamed = sorted(n for n in channels if n.startswith("ch") and n[2:].isdigit())
    if len(unnamed) == len(channels) and NUM_STOKES_CHANNELS < len(unnamed) <= NUM_STOKES_CHANNELS + 4:
        # mi.util.write_bitmap(tensor): film channels first, then S0.RGB .. S3.RGB.
        first = len(unnamed) - NUM_STOKES_CHANNELS
        stokes = [channels[n] for n in unnamed[first:first + 9]]
        return np.stack(stokes).reshape((3, 3) + stokes[0].shape).astype(np.float32)
    raise SkipSample(BAD_VALUES, f"{where}: no Stokes channels (expected S0.R ... S2.B, S0 ... S2, or a "
                                 f"15-channel mi.util.write_bitmap file), found {sorted(channels)[:12]}")


def mitsuba_stokes_to_image(s1: np.ndarray, s2: np.ndarray, focal_px: float,
                            principal_point: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Linear Stokes (S1, S2) of Mitsuba's ``stokes`` integrator -> polstereo's image convention.

    ``s1``, ``s2``: ``(..., H, W)``, any radiance units, in Mitsuba's frame of each pixel's
    ray d (x_M = d × up, up the sensor's +y); ``focal_px``: the pinhole's focal length in
    pixels (Mitsuba's ``perspective`` sensor: (W/2) / tan(fov/2), fov along x);
    ``principal_point``: (cx, cy) in pixels, pixel centres at integer coordinates, default
    the image centre ((W-1)/2, (H-1)/2). Returns the new (S1, S2) in the input's float
    dtype, angles from image-horizontal, counter-clockwise on screen (y down). S0, DoLP and
    the handedness are unchanged; the identity at the principal point. With
    (u, v) = ((x - cx)/f, (y - cy)/f), a = 1 + u², b = -uv, g = √(1 + u² + v²),
    L = √(S1² + S2²), P = L + S1, M = L - S1, D = (a² + b²) P + 2bg S2 + g² M:

        S1' = L ((a² - b²) P - 2bg S2 - g² M) / D,    S2' = 2aL (b P + g S2) / D

    Derived in docs/convert.md#the-conversion-derived.
    """
    s1 = np.asarray(s1)
    s2 = np.asarray(s2)
    height, width = s1.shape[-2:]
    cx, cy = ((width - 1) / 2.0, (height - 1) / 2.0) if principal_point is None else principal_point
    u = (np.arange(width, dtype=np.float64) - cx) / focal_px
    v = (np.arange(height, dtype=np.float64)[:, None] - cy) / focal_px
    a, b, g = 1.0 + u * u, -u * v, np.sqrt(1.0 + u * u + v * v)
    x1, x2 = s1.astype(np.float64), s2.astype(np.float64)
    linear = np.hypot(x1, x2)
    plus, minus = linear + x1, linear - x1
    denominator = (a * a + b * b) * plus + 2.0 * b * g * x2 + g * g * minus
    polarized = denominator > 0  # 0 only where L = 0: unpolarized stays unpolarized
    scale = np.where(polarized, linear / np.where(polarized, denominator, 1.0), 0.0)
    new_s1 = scale * ((a * a - b * b) * plus - 2.0 * b * g * x2 - g * g * minus)
    new_s2 = scale * 2.0 * a * (b * plus + g * x2)
    dtype = s1.dtype if s1.dtype.kind == "f" else np.float64
    return new_s1.astype(dtype, copy=False), new_s2.astype(dtype, copy=False)


def angle_images(stokes: np.ndarray, angles_deg: tuple[float, ...]) -> np.ndarray:
    """``(3, C, H, W)`` Stokes -> ``(A, C, H, W)`` I(θ) = ½(S0 + S1 cos 2θ + S2 sin 2θ), >= 0.

    Monte Carlo noise can push the linear part a hair past S0 (DoLP > 1), which would make
    some angle images negative. The fix happens in Stokes space, scaling (S1, S2) back to
    length S0 (and S0 to >= 0): clipping the angle images instead would break
    I0 + I90 = I45 + I135.
    """
    from polstereo.polar.stokes import angles_from_stokes

    s0 = np.maximum(stokes[0], 0.0)
    linear = np.sqrt(stokes[1] ** 2 + stokes[2] ** 2)
    shrink = np.where(linear > s0, s0 / np.maximum(linear, 1e-30), 1.0)
    physical = np.stack([s0, stokes[1] * shrink, stokes[2] * shrink])
    return np.maximum(angles_from_stokes(physical, angles_deg, axis=0), 0.0).astype(np.float32)


def depth_channel(channels: dict[str, np.ndarray], name: str, guess: bool = True) -> np.ndarray | None:
    """The depth channel: ``name`` or ``name.<suffix>`` (Mitsuba AOVs write ``depth.T``);
    with ``guess`` else the file's only non-film channel. None when there is none."""
    if name in channels:
        return channels[name]
    prefixed = [n for n in channels if n.startswith(name + ".")]
    if len(prefixed) == 1:
        return channels[prefixed[0]]
    if not guess:
        return None
    others = [n for n in channels if n not in FILM_CHANNEL_NAMES]
    if len(channels) == 1 or len(others) == 1:
        return channels[others[0] if others else next(iter(channels))]
    return None


def range_to_z(distance: np.ndarray, focal_px: float) -> np.ndarray:
    """Distance along each pixel's ray -> planar depth Z, pinhole with centred principal point.

    ``(H, W)``; pixel centres at integer coordinates, principal point at ((W-1)/2, (H-1)/2).
    """
    h, w = distance.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x -= (w - 1) / 2.0
    y -= (h - 1) / 2.0
    cos_angle = focal_px / np.sqrt(focal_px**2 + x**2 + y**2)
    return (distance * cos_angle).astype(np.float32)


def disparity_from_depth(z: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """disparity = f·B / Z in pixels; Z <= 0 or non-finite (no hit) -> NaN."""
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z) & (z > 0)
    disparity = np.full(z.shape, np.nan, dtype=np.float32)
    disparity[ok] = focal_px * baseline_m / z[ok]
    return disparity


class MitsubaConverter(Converter):
    name = "mitsuba"
    summary = "polarized Mitsuba 3 renders: Stokes EXR per view, disparity or depth"
    roles = {
        "left": FileRole("left.exr", True, "left view Stokes EXR (S0.R ... S3.B)"),
        "right": FileRole("right.exr", True, "right view Stokes EXR"),
        **GROUND_TRUTH_ROLES,
        "disparity": FileRole("disparity.*", False, "disparity file; else computed from depth"),
        "depth": FileRole("depth.*", False, "depth (.exr or .npy), Z or ray distance (--depth-kind)"),
    }

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.depth_kind not in DEPTH_KINDS:
            raise PolstereoError(f"unknown depth kind {self.options.depth_kind!r}; use one of {list(DEPTH_KINDS)}")

    def _stokes(self, sample_dir: Path, view: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        path = self.find(view, sample_dir)
        channels = read_exr(path)
        return stokes_from_channels(channels, str(path)), channels

    def load_views(self, sample_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        angles = self.angles_deg()
        focal = read_meta(self.find("meta", sample_dir)).get("focal_px", self.options.focal_px)
        if focal is None:
            warnings.warn(NO_FOCAL_WARNING)  # Python shows it once per process
        views = []
        for view in ("left", "right"):
            stokes = self._stokes(sample_dir, view)[0]
            if focal is not None:
                stokes[1], stokes[2] = mitsuba_stokes_to_image(stokes[1], stokes[2], float(focal))
            views.append(angle_images(stokes, angles))
        return tuple(views)

    def source_color(self, sample_dir: Path) -> str:
        return "rgb" if self._stokes(sample_dir, "left")[0].shape[1] == 3 else "mono"

    def _depth(self, sample_dir: Path) -> np.ndarray | None:
        path = self.find("depth", sample_dir)
        if path is None:
            # A Stokes file holds many channels: only an explicitly named depth counts.
            return depth_channel(read_exr(self.find("left", sample_dir)), self.options.depth_channel, guess=False)
        if path.suffix.lower() == ".exr":
            depth = depth_channel(read_exr(path), self.options.depth_channel)
            if depth is None:
                raise SkipSample(BAD_VALUES, f"{path}: no depth channel {self.options.depth_channel!r} "
                                             "(set --depth-channel)")
            return depth
        depth = read_image(path)
        if depth.ndim != 2:
            raise SkipSample(BAD_VALUES, f"{path}: depth must be (H, W), got {depth.shape}")
        return depth.astype(np.float32)

    def load_disparity(self, sample_dir: Path, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
        path = self.find("disparity", sample_dir)
        if path is not None:
            return read_disparity(path, self.options.disp_scale)
        if self.options.patterns.get("disparity") == "":
            return None  # ground truth switched off explicitly: unlabeled renders
        depth = self._depth(sample_dir)
        if depth is None:
            raise SkipSample(MISSING, f"disparity ({self.pattern('disparity')}), depth ({self.pattern('depth')}) "
                                      f"or a {self.options.depth_channel!r} channel in {self.pattern('left')}")
        focal = meta.get("focal_px", self.options.focal_px)
        baseline = meta.get("baseline_m", self.options.baseline_m)
        if focal is None or baseline is None:
            raise SkipSample(MISSING, "focal_px and baseline_m (meta.json or --focal-px/--baseline-m) "
                                      "to turn depth into disparity")
        if depth.shape != tuple(shape):
            raise SkipSample(SIZE_MISMATCH, f"depth is {depth.shape[1]}x{depth.shape[0]}, "
                                            f"images are {shape[1]}x{shape[0]}")
        z = range_to_z(depth, float(focal)) if self.options.depth_kind == "range" else depth
        return disparity_from_depth(z, float(focal), float(baseline))

