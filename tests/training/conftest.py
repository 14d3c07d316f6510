import numpy as np
import pytest

from polstereo.data.h5 import Sample, write_samples
from polstereo.polar.stokes import angles_from_stokes


def shifted_sample(rng, h=40, w=56, shift=4.0):
    """A textured pair where the right view is the left shifted by ``shift`` px."""
    s0 = rng.uniform(0.2, 0.9, (h, w + 8))
    dolp, aolp = rng.uniform(0, 0.3, (h, w + 8)), rng.uniform(0, np.pi, (h, w + 8))
    full = angles_from_stokes(np.stack([s0, s0 * dolp * np.cos(2 * aolp), s0 * dolp * np.sin(2 * aolp)]))
    s = int(shift)
    left = full[:, None, :, s:s + w].astype(np.float32)
    right = full[:, None, :, :w].astype(np.float32)
    transparent = np.zeros((h, w), bool)
    transparent[8:24, 16:40] = True
    return Sample(left=np.clip(left, 0, 1), right=np.clip(right, 0, 1), disparity=np.full((h, w), shift, np.float32),
                  transparent=transparent)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("data")
    write_samples(d / "train.h5", [shifted_sample(rng) for _ in range(4)])
    write_samples(d / "val.h5", [shifted_sample(rng) for _ in range(2)])
    return d


@pytest.fixture
def quick():
    """Options of a fast CPU run."""
    return dict(steps=3, batch_size=2, crop_size=(32, 48), workers=0, val_every=0, save_every=0, quiet=True,
                iters=1)
