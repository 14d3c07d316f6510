"""The polstereo HDF5 dataset format, version 1: what a file holds (docs/format.md).

Layout (docs/format.md is the specification; keep the two in step)::

    /                       attrs: format="polstereo", format_version=1,
                                   angles_deg (float64[A]), color ("mono"|"rgb"),
                                   provenance (JSON text), created_by, num_samples
    /samples/000000         group, attrs: name, scene_id, [focal_px], [baseline_m],
                                   [glass_kinds] ("solid-sphere,pane"; "" = no glass), [lighting]
        left   (A, C, H, W) uint8 | uint16 | float32, attr white_level
        right  (A, C, H, W) same shape and dtype as left
        [disparity]   (H, W) float32, pixels of the left image, non-finite = invalid
        [transparent] (H, W) uint8 0/1, 1 = first visible surface is transparent
        [valid]       (H, W) uint8 0/1, extra validity mask (0 = invalid)
        [occlusion]   (H, W) uint8 0/1, 1 = left pixel not visible in the right view
    /samples/000001 ...

Plain datasets and attributes only (no pickled objects), so any HDF5 tool reads it.
This module holds the format's constants, :class:`Sample` and the checks of a sample's
arrays; ``writer``, ``reader`` and ``validate`` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polstereo.errors import PolstereoError

FORMAT_NAME = "polstereo"
FORMAT_VERSION = 1
SAMPLES_GROUP = "samples"
DEFAULT_ANGLES_DEG = (0.0, 45.0, 90.0, 135.0)
COLOR_CHANNELS = {"mono": 1, "rgb": 3}
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
DEFAULT_WHITE_LEVEL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
MASK_NAMES = ("transparent", "valid", "occlusion")
SAMPLE_ATTRS_FLOAT = ("focal_px", "baseline_m")
SAMPLE_ATTRS_TEXT = ("glass_kinds", "lighting")  # optional descriptions of the scene (docs/format.md)


def sample_key(index: int) -> str:
    """The group name of sample ``index`` under ``/samples``."""
    return f"{index:06d}"


@dataclass
class Sample:
    """One polarized stereo pair with its ground truth.

    Images are angle stacks ``(A, C, H, W)``: A polarizer angles (file attribute
    ``angles_deg``), C colour channels. Stored as uint8/uint16/float32; ``white_level`` is
    the stored value that means 1.0 (default 255, 65535 or 1.0 by dtype; 4095 for
    12-bit data in uint16). Readers that normalise return float32 in [0, 1].

    ``glass_kinds`` and ``lighting`` describe the scene for per-kind results
    (``polstereo eval --by``); the vocabulary is in docs/format.md.
    """

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray | None = None
    transparent: np.ndarray | None = None
    valid: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    name: str = ""
    scene_id: str = ""
    focal_px: float | None = None
    baseline_m: float | None = None
    white_level: float | None = None
    glass_kinds: tuple[str, ...] | None = None  # glass object kinds in the sample; () no glass, None unknown
    lighting: str | None = None                 # lighting family, one word; None unknown

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return tuple(self.left.shape[-2:])

    def valid_mask(self) -> np.ndarray | None:
        """Pixels with usable ground truth (see :func:`ground_truth_mask`); None without disparity."""
        return None if self.disparity is None else ground_truth_mask(self.disparity, self.valid)


def parse_glass_kinds(value: str | Sequence[str]) -> tuple[str, ...]:
    """Glass kinds from the attribute's text (``"solid-sphere,pane"``) or a list of names:
    whitespace around each name and empty names dropped; ``""`` -> ``()`` (no glass)."""
    if not isinstance(value, str):
        if not all(isinstance(name, str) for name in value):
            raise ValueError(f"glass kinds must be text, got {value!r}")
        value = ",".join(value)
    return tuple(name.strip() for name in value.split(",") if name.strip())


def ground_truth_mask(disparity: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The format's rule for usable ground truth: finite, non-negative disparity and ``valid`` (if any)."""
    mask = np.isfinite(disparity) & (np.nan_to_num(disparity, nan=-1.0) >= 0)
    if valid is not None:
        mask &= np.asarray(valid).astype(bool)
    return mask


def _check_sample(sample: Sample, num_angles: int, channels: int) -> None:
    """Raise PolstereoError naming the first problem with ``sample``'s arrays."""
    label = f"sample {sample.name!r}" if sample.name else "sample"
    for view in ("left", "right"):
        img = np.asarray(getattr(sample, view))
        if img.ndim != 4 or img.shape[0] != num_angles or img.shape[1] != channels:
            raise PolstereoError(f"{label}: {view} image has shape {img.shape}, expected "
                                 f"({num_angles}, {channels}, H, W) (angles, channels, height, width)")
        if img.dtype not in IMAGE_DTYPES:
            raise PolstereoError(f"{label}: {view} image dtype {img.dtype} is not one of uint8, uint16, float32")
        if img.dtype.kind == "f" and not np.isfinite(img).all():
            raise PolstereoError(f"{label}: {view} image contains NaN or infinite values")
    if sample.left.shape != sample.right.shape or sample.left.dtype != sample.right.dtype:
        raise PolstereoError(f"{label}: left {sample.left.shape} {sample.left.dtype} and right "
                             f"{sample.right.shape} {sample.right.dtype} differ")
    hw = sample.shape
    for name in ("disparity", *MASK_NAMES):
        arr = getattr(sample, name)
        if arr is not None and np.shape(arr) != hw:
            raise PolstereoError(f"{label}: {name} has shape {np.shape(arr)}, expected {hw}")
    if sample.disparity is not None:
        disp = np.asarray(sample.disparity)
        if (disp[np.isfinite(disp)] < 0).any():
            raise PolstereoError(f"{label}: negative disparity values (the convention is positive disparity; "
                                 "mark invalid pixels with NaN)")
    for name in SAMPLE_ATTRS_FLOAT:
        value = getattr(sample, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            raise PolstereoError(f"{label}: {name} must be a positive number, got {value}")
    if sample.glass_kinds is not None and (isinstance(sample.glass_kinds, str) or any(
            not isinstance(k, str) or not k.strip() or "," in k for k in sample.glass_kinds)):
        raise PolstereoError(f"{label}: glass_kinds must be a list of names without commas, got "
                             f"{sample.glass_kinds!r}")
    if sample.lighting is not None and (not isinstance(sample.lighting, str) or "," in sample.lighting
                                        or len(sample.lighting.split()) > 1):
        raise PolstereoError(f"{label}: lighting must be one word, got {sample.lighting!r}")
