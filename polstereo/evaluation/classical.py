"""A classical reference: OpenCV's semi-global block matching, scored like a model.

``polstereo eval sgbm --data TEST.h5`` runs :class:`SGBMStereo` on the intensity images
(S0/2, grey) through the same loop and metrics as a checkpoint, so every table can show
how far the learned models are from a method that never saw training data. SGBM leaves
holes (no match, or failed uniqueness); they are filled from the nearer-depth neighbour on
the same row (the smaller of the nearest valid disparities to the left and right), the
usual background fill, so EPE covers every ground-truth pixel as it does for a network.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from polstereo.polar.features import intensity_image

SGBM_NAME = "sgbm"
BLOCK_SIZE = 5


def fill_holes_from_background(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``disparity`` ``(H, W)`` with each invalid pixel set to min(nearest valid on its left, on its
    right) on the same row; rows without a valid pixel become 0."""
    h, w = disparity.shape
    columns = np.broadcast_to(np.arange(w), (h, w))
    left_index = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    right_index = np.minimum.accumulate(np.where(valid, columns, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    padded = np.concatenate([disparity, np.full((h, 1), np.inf, disparity.dtype)], axis=1)  # column w: no neighbour
    from_left = padded[rows, np.where(left_index >= 0, left_index, w)]
    filled = np.minimum(from_left, padded[rows, right_index])
    filled = np.where(np.isfinite(filled), filled, 0.0)
    return np.where(valid, disparity, filled).astype(np.float32)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, num_disparities: int) -> np.ndarray:
    """SGBM disparity ``(H, W)`` float32, px, holes filled, from grey uint8 images ``(H, W)``."""
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num_disparities, blockSize=BLOCK_SIZE,
                                    P1=8 * BLOCK_SIZE ** 2, P2=32 * BLOCK_SIZE ** 2, disp12MaxDiff=1,
                                    uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    raw = matcher.compute(left, right).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    return fill_holes_from_background(raw, raw >= 0)


def _grey_uint8(image: torch.Tensor) -> np.ndarray:
    grey = image.float().mean(dim=0).clamp(0.0, 1.0).cpu().numpy()
    return np.round(255.0 * grey).astype(np.uint8)


class SGBMStereo(nn.Module):
    """OpenCV SGBM with the interface :func:`~polstereo.evaluation.evaluate.evaluate_model` uses.

    ``num_disparities``: the search range, px (rounded up to a multiple of 16); default a
    quarter of the image width. No correction module, no parameters, CPU only.
    """

    base = None
    correction = None
    base_input = "intensity"
    max_correction = 0.0

    def __init__(self, num_disparities: int | None = None):
        super().__init__()
        self.num_disparities = num_disparities

    def _range(self, width: int) -> int:
        wanted = self.num_disparities or max(16, width // 4)
        return int(16 * -(-wanted // 16))

    def forward_intensity(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                          all_estimates: bool | None = None) -> dict:
        """``left``, ``right``: ``(B, C, H, W)`` in [0, 1]; returns ``{"disparity": (B, 1, H, W)}``."""
        out = [sgbm_disparity(_grey_uint8(l_), _grey_uint8(r_), self._range(left.shape[-1]))
               for l_, r_ in zip(left, right)]
        return {"disparity": torch.from_numpy(np.stack(out))[:, None].to(left.device)}

    def forward(self, left: torch.Tensor, right: torch.Tensor, angles_deg: Sequence[float] | None = None,
                iters: int | None = None, **_ignored) -> dict:
        """Angle stacks ``(B, A, C, H, W)``: SGBM on their intensity images (polarization unused)."""
        angles = angles_deg if angles_deg is not None else (0.0, 45.0, 90.0, 135.0)
        out = self.forward_intensity(intensity_image(left, angles), intensity_image(right, angles))
        out.update(base_disparity=out["disparity"], saturation_fraction=None)
        return out
