"""Masked image modelling with an EMA teacher (after MaDis-Stereo).

The student sees views with random square patches blanked out and learns, besides its
disparity loss, to reconstruct the left intensity image under the mask through a light
head on its left features. A teacher, the exponential moving average of the student,
sees the unmasked views; its disparities supervise the student where ground truth is
missing (invalid pixels, or files without disparity: unlabeled captures).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ReconstructionHead(nn.Module):
    """Left features at 1/``factor`` resolution -> intensity image ``(B, C, H, W)``."""

    def __init__(self, feature_dim: int, out_channels: int, factor: int = 4, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(feature_dim, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, out_channels * factor * factor, 1), nn.PixelShuffle(factor))

    def forward(self, features: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        return self.net(features.float())[..., : size_hw[0], : size_hw[1]]


def patch_mask(batch: int, size_hw: tuple[int, int], ratio: float, patch: int, seed: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, 1, H, W)`` bool, True on masked pixels: ``ratio`` of ``patch``-sized squares.

    Deterministic in ``seed`` (the trainer passes one derived from the step), so a
    resumed run masks exactly what an uninterrupted one would.
    """
    h, w = size_hw
    gh, gw = -(-h // patch), -(-w // patch)
    generator = torch.Generator().manual_seed(int(seed))
    scores = torch.rand(batch, gh * gw, generator=generator)
    count = int(round(ratio * gh * gw))
    masked = torch.zeros(batch, gh * gw, dtype=torch.bool)
    if count:
        masked.scatter_(1, scores.topk(count, dim=1).indices, True)
    grid = masked.view(batch, 1, gh, gw)
    full = grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[..., :h, :w]
    return full.to(device)


def mask_views(stack: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blank the masked pixels of every angle image of ``(B, A, C, H, W)`` (same mask for all)."""
    return stack * (~mask).to(stack.dtype).unsqueeze(1)


class StudentWithHead(nn.Module):
    """The model and its reconstruction head as one module (one DDP wrapper for both)."""

    def __init__(self, model: nn.Module, head: ReconstructionHead):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, left, right, **kwargs) -> dict:
        out = dict(self.model(left, right, **kwargs))
        out["reconstruction"] = self.head(out["features"], left.shape[-2:])
        return out


class EMATeacher:
    """A frozen copy of the student that tracks ``decay · teacher + (1 − decay) · student``."""

    def __init__(self, student: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(student).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.lerp_(s.detach(), 1.0 - self.decay)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)

    @torch.no_grad()
    def __call__(self, *args, **kwargs) -> dict:
        return self.model(*args, **kwargs)
