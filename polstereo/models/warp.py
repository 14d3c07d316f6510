"""Disparity warp: bring a right-view image into the left view.

``warped(u, v) = x(u - d(u, v), v)``: the left pixel u sees the same point as the
right pixel u - d. Bilinear sampling with pixel centres at integer coordinates
(``align_corners=True``), so integer disparities reproduce pixels exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from polstereo.models.forms import one_pass


def warp(x: torch.Tensor, disparity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``x (B, C, H, W)`` by ``disparity (B, 1, H, W)`` (pixels, positive = shift left).

    Returns:
        warped ``(B, C, H, W)``, zero where invalid;
        valid ``(B, 1, H, W)`` bool, False where ``u - d`` falls outside ``[0, W-1]``
        (or the disparity is not finite).
    Differentiable in both ``x`` and ``disparity``.
    """
    b, _, h, w = x.shape
    # Coordinates in at least float32 whatever the autocast dtype: bf16 cannot even
    # represent every integer pixel position beyond 256.
    dtype = torch.promote_types(x.dtype, torch.float32)
    u = torch.arange(w, device=x.device, dtype=dtype).view(1, 1, 1, w)
    v = torch.arange(h, device=x.device, dtype=dtype).view(1, 1, h, 1)
    src_u = u - disparity.to(dtype)                         # (B, 1, H, W)
    valid = (src_u >= 0) & (src_u <= w - 1)
    # align_corners=True maps -1 / +1 to the centres of the first / last pixel.
    grid_u = 2.0 * src_u / max(w - 1, 1) - 1.0
    # Invalid (incl. non-finite) samples point off-image: huge or NaN grids would give NaNs.
    grid_u = torch.where(valid, grid_u, torch.full_like(grid_u, -2.0))
    grid_v = (2.0 * v / max(h - 1, 1) - 1.0).expand_as(grid_u)
    grid = torch.stack([grid_u, grid_v], dim=-1).squeeze(1)  # (B, H, W, 2)
    warped = F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.where(valid, warped, torch.zeros_like(warped)).to(x.dtype), valid


def warp_disagreement(left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """How much ``left`` and the right view warped by ``disparity`` differ, per pixel.

    Returns ``Σ_channels |left − warp(right, d)|`` ``(B, 1, H, W)`` (0 where invalid) and
    the warp's validity (:func:`warp`). The one primitive behind the correction module's
    search cost volume and the polarization-evidence statistics.
    """
    warped, valid = warp(right, disparity)
    return _sum_channels((left - warped).abs()).unsqueeze(1), valid


def _sum_channels(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(1)`` added in channel order, whatever the layout: a reduction kernel's order
    depends on the tensor's shape, and the loop and one-pass forms must agree bit for bit."""
    total = x[:, 0]
    for c in range(1, x.shape[1]):
        total = total + x[:, c]
    return total


def warp_disagreement_candidates(left: torch.Tensor, right: torch.Tensor, candidates: torch.Tensor,
                                 batched: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`warp_disagreement` at each of K candidate disparity maps ``(B, K, H, W)``.

    Returns ``(cost, valid)``, both ``(B, K, H, W)``: channel ``i`` equals
    ``warp_disagreement(left, right, candidates[:, i:i+1])`` bit for bit. ``batched``:
    one ``grid_sample`` over the K candidate images stacked along y, or one warp per
    candidate (default: by device, :mod:`polstereo.models.forms`).
    """
    if not one_pass(right, batched):
        singles = [warp_disagreement(left, right, candidates[:, i:i + 1]) for i in range(candidates.shape[1])]
        return torch.cat([c for c, _ in singles], dim=1), torch.cat([v for _, v in singles], dim=1)
    b, c, h, w = right.shape
    k = candidates.shape[1]
    dtype = torch.promote_types(right.dtype, torch.float32)
    u = torch.arange(w, device=right.device, dtype=dtype).view(1, 1, 1, w)
    v = torch.arange(h, device=right.device, dtype=dtype).view(1, 1, h, 1)
    src_u = u - candidates.to(dtype)                          # (B, K, H, W)
    valid = (src_u >= 0) & (src_u <= w - 1)
    grid_u = 2.0 * src_u / max(w - 1, 1) - 1.0
    grid_u = torch.where(valid, grid_u, torch.full_like(grid_u, -2.0))
    grid_v = (2.0 * v / max(h - 1, 1) - 1.0).expand_as(grid_u)
    # the K candidate images stacked along y: output row k·H + v samples row v at candidate k
    grid = torch.stack([grid_u, grid_v], dim=-1).view(b, k * h, w, 2)
    warped = F.grid_sample(right.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    warped = warped.view(b, c, k, h, w)
    warped = torch.where(valid.unsqueeze(1), warped, torch.zeros_like(warped)).to(right.dtype)
    return _sum_channels((left.unsqueeze(2) - warped).abs()), valid


def offset_candidates(disparity: torch.Tensor, offsets: Sequence[float]) -> torch.Tensor:
    """``(B, K, H, W)``: ``disparity (B, 1, H, W) + k`` for each k, in the disparity's dtype."""
    return disparity + torch.tensor(list(offsets), dtype=disparity.dtype, device=disparity.device).view(1, -1, 1, 1)
