"""Running a dense stereo predictor on images too large for memory: downscaling and row bands.

A *predictor* maps a left and a right image tensor ``(..., H, W)`` (any leading dims, e.g.
``(B, C, H, W)`` images or ``(B, A, C, H, W)`` angle stacks) to a dict of maps
``(B, K, H, W)``. Both helpers wrap a predictor and return maps at the input size.

Why bands are full-width rows: on a rectified pair a left pixel (x, y) matches the right
pixel (x - d, y) on the *same row*, with d unknown and up to a large share of the width.
Cutting along y keeps every match inside its band; cutting along x would cut matches in
two (the right image's partner of a tile's left pixel lies outside the same tile) unless
each tile carried the whole disparity range of extra context. Bands overlap and are
blended linearly so that each output row comes mostly from a band in which it has
context above and below.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from polstereo.errors import PolstereoError

Predictor = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def row_bands(height: int, rows: int, overlap: int) -> list[tuple[int, int]]:
    """Row ranges ``[(start, stop), ...]`` of bands ``rows`` tall covering ``height`` rows.

    Neighbouring bands share at least ``overlap`` rows (the last band is moved up to end at
    the bottom, so it may share more). One band when ``rows >= height``.
    """
    if rows < 1:
        raise PolstereoError(f"band height must be at least 1 row, got {rows}")
    if rows >= height:
        return [(0, height)]
    if not 0 <= overlap < rows:
        raise PolstereoError(f"band overlap must be between 0 and the band height - 1 ({rows - 1}), got {overlap}")
    starts = list(range(0, height - rows, rows - overlap)) + [height - rows]
    return [(start, start + rows) for start in starts]


def band_weights(height: int, start: int, stop: int, overlap: int) -> np.ndarray:
    """Blend weights ``(stop - start,)`` in [0, 1] of a band's rows.

    The weight ramps linearly with the distance from the band's cut edges (not from the
    image's own top and bottom, which every run sees alike): 0 within ``overlap // 4`` rows
    of a cut, 1 from ``overlap - overlap // 4`` rows on. Rows next to a cut lack context
    on one side; dropping them entirely makes a predictor whose rows depend only on rows
    within ``overlap // 4`` give exactly the whole-image result. In any overlap one band is
    at least ``overlap / 2`` rows from its cut, so the weights never all vanish.
    """
    centres = np.arange(start, stop, dtype=np.float64) + 0.5
    to_top = centres - start if start > 0 else np.full_like(centres, np.inf)
    to_bottom = stop - centres if stop < height else np.full_like(centres, np.inf)
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    return np.clip((np.minimum(to_top, to_bottom) - margin) / ramp, 0.0, 1.0)


def run_in_row_bands(predict: Predictor, left: torch.Tensor, right: torch.Tensor, rows: int,
                     overlap: int) -> dict[str, torch.Tensor]:
    """``predict`` on overlapping full-width row bands of ``rows`` rows, blended (see the module docstring)."""
    height = left.shape[-2]
    bands = row_bands(height, rows, overlap)
    if len(bands) == 1:
        return predict(left, right)
    sums: dict[str, torch.Tensor] = {}
    total = torch.zeros(height, 1, dtype=torch.float32, device=left.device)
    for start, stop in bands:
        out = predict(left[..., start:stop, :], right[..., start:stop, :])
        weight = torch.from_numpy(band_weights(height, start, stop, overlap)).float().to(left.device)[:, None]
        for key, value in out.items():
            if key not in sums:
                sums[key] = value.new_zeros(value.shape[:-2] + (height, value.shape[-1]), dtype=torch.float32)
            sums[key][..., start:stop, :] += value.float() * weight
        total[start:stop] += weight
    return {key: value / total for key, value in sums.items()}


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(..., H, W)`` to ``size`` ``(h, w)``, antialiased when shrinking.

    Linear in intensity, so resized angle images keep their Stokes relations.
    """
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    flat = images.reshape((1, -1, height, width))
    shrinking = size[0] < height or size[1] < width
    out = F.interpolate(flat.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)
    return out.to(images.dtype).reshape(images.shape[:-2] + tuple(size))


def scaled_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` with the long side at most ``max_size``, aspect kept (unchanged if already small)."""
    if max_size < 1:
        raise PolstereoError(f"--max-size must be positive, got {max_size}")
    scale = max_size / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def run_downscaled(predict: Predictor, left: torch.Tensor, right: torch.Tensor, max_size: int,
                   disparity_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """``predict`` on copies whose long side is at most ``max_size``; maps upsampled back.

    Maps named in ``disparity_keys`` are multiplied by ``W / w`` (full over reduced width):
    a disparity in reduced pixels is that many times larger in full-resolution pixels.
    """
    height, width = left.shape[-2:]
    small = scaled_size(height, width, max_size)
    if small == (height, width):
        return predict(left, right)
    out = predict(resize(left, small), resize(right, small))
    x_scale = width / small[1]
    disparity_keys = set(disparity_keys)
    return {key: resize(value.float(), (height, width)) * (x_scale if key in disparity_keys else 1.0)
            for key, value in out.items()}


__all__ = ["Predictor", "row_bands", "band_weights", "run_in_row_bands", "resize", "scaled_size", "run_downscaled"]
