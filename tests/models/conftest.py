"""Shared fixtures for the model tests: tiny random inputs, seeded."""

from __future__ import annotations

import pytest
import torch



@pytest.fixture
def stacks():
    """Left/right polarizer-angle stacks ``(1, 4, 1, 40, 56)`` in [0, 1]."""
    def make(b=1, a=4, c=1, h=40, w=56):
        return torch.rand(b, a, c, h, w), torch.rand(b, a, c, h, w)
    return make
