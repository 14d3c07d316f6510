"""Pictures of disparity, correction, confidence and polarization maps.

Inputs are float maps ``(H, W)``; outputs are ``uint8`` RGB ``(H, W, 3)`` (or grey
``(H, W)``) ready for :func:`polstereo.io.images.write_image`. Non-finite values (invalid
pixels) are drawn black.

Colormaps are 256-entry RGB tables (:data:`COLORMAPS`): ``turbo`` (OpenCV's table) for
disparity, ``coolwarm`` (a blue - light grey - red diverging map after K. Moreland's
"cool to warm", for signed values such as the correction) and one mechanism,
:func:`apply_colormap`, that maps ``[vmin, vmax]`` linearly onto a table.

Polarization follows the usual convention: AoLP as hue (0 -> red, π/3 -> green,
2π/3 -> blue, π wraps back to red, matching AoLP's π period), DoLP as value (dark =
unpolarized) or as saturation (white = unpolarized).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import cv2
import numpy as np

from polstereo.errors import PolstereoError

TABLE_SIZE = 256

# K. Moreland, "Diverging Color Maps for Scientific Visualization" (2009): cool to warm end
# points and the light grey midpoint, sRGB 0-255.
_COOLWARM_ANCHORS = ((59, 76, 192), (221, 221, 221), (180, 4, 38))


def _opencv_table(code: int) -> np.ndarray:
    ramp = np.arange(TABLE_SIZE, dtype=np.uint8)[:, None]
    return cv2.applyColorMap(ramp, code)[:, 0, ::-1].copy()  # BGR -> RGB


def _anchor_table(anchors) -> np.ndarray:
    anchors = np.asarray(anchors, dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, TABLE_SIZE)
    channels = [np.interp(t, positions, anchors[:, k]) for k in range(3)]
    return np.round(np.stack(channels, axis=-1)).astype(np.uint8)


COLORMAPS: dict[str, Callable[[], np.ndarray]] = {
    "turbo": lambda: _opencv_table(cv2.COLORMAP_TURBO),
    "coolwarm": lambda: _anchor_table(_COOLWARM_ANCHORS),
    "gray": lambda: np.repeat(np.arange(TABLE_SIZE, dtype=np.uint8)[:, None], 3, axis=1),
}


@functools.lru_cache(maxsize=None)
def colormap_table(name: str) -> np.ndarray:
    """The ``(256, 3)`` uint8 RGB table of colormap ``name`` (read-only)."""
    if name not in COLORMAPS:
        raise PolstereoError(f"unknown colormap {name!r}; known: {', '.join(COLORMAPS)}")
    table = COLORMAPS[name]()
    table.setflags(write=False)
    return table


def finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values, or None when there are none."""
    finite = np.asarray(values)[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, cmap: str = "turbo") -> np.ndarray:
    """Map ``(H, W)`` values linearly from ``[vmin, vmax]`` onto a colormap -> ``(H, W, 3)`` uint8.

    Values outside the range are clipped to its ends; ``vmin`` gets the table's first
    entry, ``vmax`` its last; with ``vmax <= vmin`` every finite value gets the first entry.
    Non-finite values are black.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise PolstereoError(f"expected an (H, W) map to colourise, got shape {values.shape}")
    finite = np.isfinite(values)
    span = vmax - vmin
    t = (np.where(finite, values, vmin) - vmin) / span if span > 0 else np.zeros_like(values)
    index = np.round(np.clip(t, 0.0, 1.0) * (TABLE_SIZE - 1)).astype(np.intp)
    rgb = colormap_table(cmap)[index]
    rgb[~finite] = 0
    return rgb


def disparity_to_rgb(disparity: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                     cmap: str = "turbo") -> np.ndarray:
    """Colourised disparity ``(H, W, 3)`` uint8; the range is per image unless ``vmin``/``vmax`` fix it.

    A fixed range makes colours comparable across images (same colour = same disparity);
    the per-image range (finite min to max) uses the whole colormap for each one.
    """
    low_high = finite_range(disparity) or (0.0, 1.0)
    vmin = low_high[0] if vmin is None else float(vmin)
    vmax = low_high[1] if vmax is None else float(vmax)
    return apply_colormap(disparity, vmin, vmax, cmap)


def correction_to_rgb(correction: np.ndarray, limit: float, cmap: str = "coolwarm") -> np.ndarray:
    """Signed correction (pixels) on a diverging map over ``[-limit, limit]``: 0 is the midpoint.

    Use ``limit = max_correction`` so that colours are comparable across images and
    saturated corrections (the tanh bound) show as the map's ends.
    """
    if not limit > 0:
        raise PolstereoError(f"the correction colour range must be positive, got {limit}")
    return apply_colormap(correction, -float(limit), float(limit), cmap)


def unit_to_gray(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (confidence, DoLP) -> ``(H, W)`` uint8 0-255; non-finite -> 0."""
    values = np.asarray(values, dtype=np.float64)
    return np.round(np.clip(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0) * 255).astype(np.uint8)


def image_to_uint8(image: np.ndarray) -> np.ndarray:
    """An image ``(C, H, W)`` in [0, 1] (C = 1 or 3) -> ``(H, W)`` or ``(H, W, 3)`` uint8."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise PolstereoError(f"expected a (C, H, W) image with C = 1 or 3, got shape {image.shape}")
    gray_or_rgb = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return unit_to_gray(gray_or_rgb)


def image_to_rgb(image: np.ndarray) -> np.ndarray:
    """Like :func:`image_to_uint8` but always ``(H, W, 3)`` (mono replicated), e.g. point colours."""
    out = image_to_uint8(image)
    return np.repeat(out[..., None], 3, axis=-1) if out.ndim == 2 else out


POLARIZATION_MODES = ("value", "saturation")


def aolp_to_rgb(aolp: np.ndarray, dolp: np.ndarray | None = None, mode: str = "value") -> np.ndarray:
    """AoLP (radians, [0, π)) as hue -> ``(H, W, 3)`` uint8, optionally weighted by DoLP.

    Hue = AoLP / π · 360°. Without ``dolp`` saturation and value are 1. With ``dolp``
    (in [0, 1]): ``mode="value"`` sets value = DoLP (unpolarized pixels black),
    ``mode="saturation"`` sets saturation = DoLP (unpolarized pixels white).
    Non-finite AoLP or DoLP -> black.
    """
    if mode not in POLARIZATION_MODES:
        raise PolstereoError(f"unknown polarization picture mode {mode!r}; use {' or '.join(POLARIZATION_MODES)}")
    aolp = np.asarray(aolp, dtype=np.float64)
    if aolp.ndim != 2:
        raise PolstereoError(f"expected an (H, W) AoLP map, got shape {aolp.shape}")
    invalid = ~np.isfinite(aolp)
    hue = np.mod(np.nan_to_num(aolp) / math.pi, 1.0) * 360.0
    ones = np.ones_like(hue)
    saturation, value = ones, ones
    if dolp is not None:
        dolp = np.asarray(dolp, dtype=np.float64)
        if dolp.shape != aolp.shape:
            raise PolstereoError(f"DoLP shape {dolp.shape} differs from AoLP shape {aolp.shape}")
        invalid |= ~np.isfinite(dolp)
        weight = np.clip(np.nan_to_num(dolp), 0.0, 1.0)
        saturation, value = (ones, weight) if mode == "value" else (weight, ones)
    hsv = np.stack([hue, saturation, value], axis=-1).astype(np.float32)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)  # float HSV: hue in degrees, S and V in [0, 1]
    out = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    out[invalid] = 0
    return out


__all__ = [
    "COLORMAPS", "colormap_table", "finite_range", "apply_colormap", "disparity_to_rgb", "correction_to_rgb",
    "unit_to_gray", "image_to_uint8", "image_to_rgb", "aolp_to_rgb", "POLARIZATION_MODES",
]


ERROR_RANGE_PX = 5.0  # error maps run from 0 to 5 px: bad-5 and worse at the map's end


def comparison_pictures(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colourised ``(prediction, ground truth, |error|)``, each ``(H, W, 3)`` uint8.

    Prediction and ground truth share the ground truth's range, so equal colours mean
    equal disparities; invalid (non-finite) ground truth is black in the error map.
    """
    low, high = finite_range(gt) or finite_range(pred) or (0.0, 1.0)
    error = np.where(np.isfinite(gt), np.abs(pred - gt), np.nan)
    return (disparity_to_rgb(pred, low, high), disparity_to_rgb(gt, low, high),
            apply_colormap(error, 0.0, ERROR_RANGE_PX, "turbo"))
