"""Learned convex upsampling (RAFT-style): each fine pixel is a convex combination of the
3x3 coarse neighbourhood around its parent, with weights predicted by the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def neighbours_3x3(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w) -> (B, C, 9, h, w)``, the 3x3 neighbourhood, row-major, edges replicated.

    Built from shifted slices rather than ``F.unfold`` so ONNX export stays simple, and
    replicated rather than zero-padded so border disparities are not pulled towards 0.
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.stack([padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], dim=2)


def convex_upsample(x: torch.Tensor, mask_logits: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample ``x (B, C, h, w)`` to ``(B, C, factor*h, factor*w)`` with convex weights.

    ``mask_logits`` ``(B, 9 * factor**2, h, w)``: for each of the factor x factor fine
    pixels of a coarse cell, logits over the 9 coarse neighbours (softmax-normalised).
    Values are not rescaled: multiply a disparity by ``factor`` yourself.
    The output stays within the min/max of each neighbourhood (convex combination).
    """
    b, c, h, w = x.shape
    weights = torch.softmax(mask_logits.view(b, 1, 9, factor, factor, h, w), dim=2)
    nb = neighbours_3x3(x).view(b, c, 9, 1, 1, h, w)
    up = (weights * nb).sum(dim=2)                          # (B, C, f, f, h, w)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * factor, w * factor)
