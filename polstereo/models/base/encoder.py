"""Shared feature encoder to 1/4 resolution with a context branch for the left image.

One convolutional trunk serves both views (weights shared, run as one batch), so the
matching features of the left and right images live in the same space. A 1x1 head
turns the trunk output into matching features; a second head, run on the left view
only, gives the refinement's initial hidden state and its context features.
"""

from __future__ import annotations

import torch
from torch import nn

from polstereo.models.layers import ResidualBlock, make_norm


class FeatureEncoder(nn.Module):
    """Image ``(N, 3, H, W)`` -> trunk features ``(N, dims[-1], H/4, W/4)``.

    ``dims`` = channels at 1/2, 1/4 and after the last trunk stage; ``blocks`` residual
    blocks per stage. H and W must be multiples of 4.
    """

    def __init__(self, dims: tuple[int, int, int], blocks: int, norm: str, in_ch: int = 3):
        super().__init__()
        c1, c2, c3 = dims
        self.stem = nn.Sequential(nn.Conv2d(in_ch, c1, 5, stride=2, padding=2), make_norm(norm, c1),
                                  nn.ReLU(inplace=True))
        self.stage1 = nn.Sequential(*[ResidualBlock(c1, c1, norm) for _ in range(blocks)])
        self.stage2 = nn.Sequential(ResidualBlock(c1, c2, norm, stride=2),
                                    *[ResidualBlock(c2, c2, norm) for _ in range(blocks - 1)])
        self.stage3 = nn.Sequential(*[ResidualBlock(c2 if i == 0 else c3, c3, norm) for i in range(blocks)])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(image))))


class StereoEncoder(nn.Module):
    """Left/right images -> matching features for both views and context for the left.

    Args:
        dims, blocks, norm: trunk shape (see :class:`FeatureEncoder`).
        feature_dim: channels of the matching features.
        hidden_dim, context_dim: channels of the refinement's hidden state and context.

    Returns from ``forward(left, right)`` (images ``(B, 3, H, W)``, normalized to [-1, 1]):
        ``feat_left``, ``feat_right`` ``(B, feature_dim, H/4, W/4)``,
        ``hidden`` ``(B, hidden_dim, H/4, W/4)`` in (-1, 1), ``context`` ``(B, context_dim, H/4, W/4)`` >= 0.
    """

    def __init__(self, dims: tuple[int, int, int], blocks: int, norm: str,
                 feature_dim: int, hidden_dim: int, context_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.trunk = FeatureEncoder(dims, blocks, norm)
        self.match_head = nn.Conv2d(dims[2], feature_dim, 1)
        self.context_head = nn.Sequential(nn.Conv2d(dims[2], dims[2], 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(dims[2], hidden_dim + context_dim, 1))

    def forward(self, left: torch.Tensor, right: torch.Tensor):
        trunk = self.trunk(torch.cat([left, right], dim=0))
        trunk_left, _ = trunk.chunk(2, dim=0)
        feat_left, feat_right = self.match_head(trunk).chunk(2, dim=0)
        ctx = self.context_head(trunk_left)
        hidden = torch.tanh(ctx[:, :self.hidden_dim])
        context = torch.relu(ctx[:, self.hidden_dim:])
        return feat_left, feat_right, hidden, context
