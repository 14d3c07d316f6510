"""Layers the base network and the correction module share: normalisation by name, residual blocks."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "group", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalization layer by name: ``instance`` | ``batch`` | ``group`` | ``none``."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip; ``stride=2`` halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation)
        self.norm1 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.norm2 = make_norm(norm, out_ch)
        self.act = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.skip = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), make_norm(norm, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.skip(x))
