"""Fixtures for inference tests: a tiny checkpoint, stub models with known outputs, input files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polstereo.io.images import write_image
from polstereo.models.full import PolStereoModel
from polstereo.models.files import save_model
from polstereo.models.registry import build_model
from polstereo.polar.mosaic import mosaic

H, W = 48, 64
ANGLES = (0, 45, 90, 135)



@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A randomly initialised tiny model with a (mono) correction module."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.manual_seed(0)
    save_model(path, build_model({"base": "tiny", "correction": True}))
    return path


class LocalBase(nn.Module):
    """Stand-in base model with a known output.

    ``constant`` set: disparity = constant everywhere (pixels of its input). Otherwise the
    disparity at (y, x) is the sum of the left image's channel mean over rows y-radius..y+radius
    (zero outside the image): its rows depend only on rows within ``radius``.
    """

    def __init__(self, radius: int = 0, constant: float | None = None):
        super().__init__()
        self.radius, self.constant = radius, constant
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, left, right, iters=None, all_estimates=None):
        if self.constant is not None:
            disparity = torch.full_like(left[:, :1], self.constant)
        else:
            kernel = torch.ones(1, 1, 2 * self.radius + 1, 1, dtype=left.dtype, device=left.device)
            disparity = F.conv2d(left.mean(1, keepdim=True), kernel, padding=(self.radius, 0))
        return {"disparity": disparity, "confidence": torch.full_like(disparity, 0.5)}


def stub_model(**kwargs) -> PolStereoModel:
    return PolStereoModel(LocalBase(**kwargs), correction=None)


def angle_stack(rng: np.random.Generator, channels: int = 1, h: int = H, w: int = W) -> np.ndarray:
    """A random but physically valid angle stack (A, C, H, W) in [0, 1] (from Stokes with DoLP < 1)."""
    s0 = rng.uniform(0.2, 0.9, (channels, h, w))
    dop = rng.uniform(0.0, 0.5, (channels, h, w))
    phi = rng.uniform(0, np.pi, (channels, h, w))
    theta = np.deg2rad(np.array(ANGLES, dtype=float))[:, None, None, None]
    return (0.5 * s0 * (1 + dop * np.cos(2 * (theta - phi)))).astype(np.float32)


def write_mosaic_pair(directory: Path, rng: np.random.Generator, name: str = "cap") -> tuple[Path, Path]:
    """12-bit raw IMX250MZR mosaics stored in 16-bit PNGs; the right view is shifted by 4 px."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = angle_stack(rng)
    raw = np.round(mosaic(stack) * 4095).astype(np.uint16)
    left, right = directory / f"{name}_left.png", directory / f"{name}_right.png"
    write_image(left, raw)
    write_image(right, np.roll(raw, -4, axis=1))
    return left, right


def write_angle_images(directory: Path, rng: np.random.Generator, name: str, view: str) -> None:
    """Four 8-bit angle images ``{directory}/{name}_{view}_{angle}.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = np.round(angle_stack(rng) * 255).astype(np.uint8)
    for angle, image in zip(ANGLES, stack):
        write_image(directory / f"{name}_{view}_{angle}.png", image[0])


def write_ordinary(path: Path, rng: np.random.Generator, channels: int = 3, h: int = H, w: int = W) -> Path:
    shape = (h, w, channels) if channels > 1 else (h, w)
    write_image(path, rng.integers(0, 256, shape, dtype=np.uint8))
    return path
