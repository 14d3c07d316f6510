"""Shared fixtures: small generated samples and files (no committed blobs)."""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.data.h5 import Sample, write_samples


def make_sample(rng: np.random.Generator, h: int = 24, w: int = 40, dtype=np.uint8, channels: int = 1,
                name: str = "s", with_masks: bool = True) -> Sample:
    """A random but well-formed sample: angle stacks, disparity with a few invalid pixels, masks."""
    high = {np.uint8: 255, np.uint16: 65535}.get(dtype)
    shape = (4, channels, h, w)
    if high is None:
        left, right = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    else:
        left = rng.integers(0, high + 1, shape, dtype=dtype)
        right = rng.integers(0, high + 1, shape, dtype=dtype)
    disparity = (rng.random((h, w)) * 12).astype(np.float32)
    disparity[0, :3] = np.nan
    return Sample(left=left, right=right, disparity=disparity,
                  transparent=(rng.random((h, w)) > 0.7) if with_masks else None,
                  occlusion=(rng.random((h, w)) > 0.9) if with_masks else None,
                  name=name, scene_id="scene0", focal_px=120.0, baseline_m=0.05)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed torch, and use one intra-op thread: the tiny test models gain nothing from more,
    and with DataLoader or torchrun processes beside them on 2 cores extra threads thrash."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def h5_file(tmp_path, rng):
    """A valid 3-sample mono uint8 file."""
    path = tmp_path / "data.h5"
    write_samples(path, [make_sample(rng, name=f"s{i}") for i in range(3)], provenance={"source": "test"})
    return path
