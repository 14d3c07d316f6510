"""Global matching initialisation: full 1D correlation along each row, soft-argmax.

At 1/4 resolution every left pixel x is compared with every right pixel x' of the
same row. A softmax over the candidates x' <= x (x' > x would mean a negative
disparity, so it is masked out) gives a matching distribution; its expectation is
the initial disparity ``x - E[x']`` and its peak probability the confidence. No
maximum disparity is baked in: the candidate range grows with the image width.

Plain softmax rather than Sinkhorn: with the x' <= x mask the only doubly
stochastic matrix is the identity (zero disparity), so optimal transport here would
need dustbins for unmatched pixels; the row softmax is its one-sided relaxation.
"""

from __future__ import annotations

import math

import torch

# Finite rather than -inf so fp16 autocast and gradients stay NaN-free.
_MASKED_LOGIT = -1.0e4


def correlation_1d(feat_left: torch.Tensor, feat_right: torch.Tensor) -> torch.Tensor:
    """Row-wise correlation ``corr[b, y, x, x'] = <left(x, y), right(x', y)> / sqrt(D)``.

    ``(B, D, h, w)`` x2 -> ``(B, h, w, w)``.
    """
    d = feat_left.shape[1]
    left = feat_left.permute(0, 2, 3, 1)   # (B, h, w, D)
    right = feat_right.permute(0, 2, 1, 3)  # (B, h, D, w)
    return torch.matmul(left, right) / math.sqrt(d)


def positive_disparity_mask(width: int, device=None) -> torch.Tensor:
    """``(w, w)`` bool, True where candidate x' <= x (disparity >= 0)."""
    x = torch.arange(width, device=device)
    return x[:, None] >= x[None, :]


def global_matching(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax disparity and confidence from matching logits.

    Args:
        logits: ``(B, h, w, w)`` scores of left pixel x (dim 2) against right pixel x'
            (dim 3) of the same row; higher = better match.

    Returns:
        disparity ``(B, 1, h, w)`` in pixels of this resolution, >= 0, float32 (also
        under autocast: half precision would quantise large disparities);
        confidence ``(B, 1, h, w)`` in [0, 1], the peak matching probability.
    """
    w = logits.shape[-1]
    valid = positive_disparity_mask(w, logits.device)
    prob = torch.softmax(logits.masked_fill(~valid, _MASKED_LOGIT).float(), dim=-1)
    x = torch.arange(w, device=logits.device, dtype=prob.dtype)
    matched_x = (prob * x).sum(dim=-1)                     # (B, h, w)
    disparity = (x - matched_x).clamp_min(0.0).unsqueeze(1)
    confidence = prob.amax(dim=-1).unsqueeze(1)
    return disparity, confidence
