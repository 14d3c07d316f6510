"""Shared fixtures for the model tests: tiny random inputs, seeded."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One intra-op thread: these tiny models gain nothing from two, and on a shared
    # 2-core machine spinning OpenMP threads made the suite several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def stacks():
    """Left/right polarizer-angle stacks ``(1, 4, 1, 40, 56)`` in [0, 1]."""
    def make(b=1, a=4, c=1, h=40, w=56):
        return torch.rand(b, a, c, h, w), torch.rand(b, a, c, h, w)
    return make
