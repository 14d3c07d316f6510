"""Training losses on disparity (pixels), computed in float32 whatever the autocast."""

from __future__ import annotations

import torch


def robust_error(error: torch.Tensor, scale: float | None) -> torch.Tensor:
    """``|error|`` (``scale`` None), or ``scale · log(1 + |error| / scale)``: equal to |error| for
    small errors, growing only logarithmically beyond ``scale`` pixels, so its gradient
    ``1 / (1 + |e| / scale)`` fades on errors the model cannot close (glass it matches through)
    instead of pulling every pixel's features towards them."""
    error = error.abs()
    if scale is None:
        return error
    return scale * torch.log1p(error / scale)


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, weight: torch.Tensor,
              robust_scale: float | None = None) -> torch.Tensor:
    """Weighted mean |pred − gt| (or its robust form, :func:`robust_error`); ``weight`` is 0 on
    ignored pixels. All ``(B, 1, H, W)``."""
    pred = pred.float()
    total = weight.sum()
    return (robust_error(pred - gt, robust_scale) * weight).sum() / total.clamp_min(1.0)


def pixel_weights(valid: torch.Tensor, transparent: torch.Tensor, gt: torch.Tensor,
                  max_disparity: float | None, transparent_weight: float) -> torch.Tensor:
    """Per-pixel loss weights: 0 on invalid pixels and beyond ``max_disparity``,
    ``transparent_weight`` on transparent ones, 1 elsewhere."""
    keep = valid.bool() & torch.isfinite(gt)
    if max_disparity is not None:
        keep &= gt < max_disparity
    weight = keep.float()
    if transparent_weight != 1.0:
        weight = weight * torch.where(transparent.bool(), transparent_weight, 1.0)
    return weight


def sequence_loss(estimates: list[torch.Tensor], gt: torch.Tensor, weight: torch.Tensor,
                  gamma: float = 0.9, robust_scale: float | None = None) -> torch.Tensor:
    """RAFT-style exponentially weighted L1 over a list of estimates (last weighs 1).

    With n estimates, estimate i (0-based) weighs ``gamma ** (n − 1 − i)``; the sum of
    the weights is normalised to 1 so the loss scale does not depend on n.
    """
    n = len(estimates)
    if n == 0:
        raise ValueError("sequence_loss needs at least one estimate")
    weights = [gamma ** (n - 1 - i) for i in range(n)]
    total = sum(weights)
    return sum(w * masked_l1(e, gt, weight, robust_scale) for w, e in zip(weights, estimates)) / total
