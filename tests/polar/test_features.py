"""Tests for polstereo.polar.features: shapes, channel order, known values."""

from __future__ import annotations

import math

import torch

from polstereo.polar.features import intensity_image, pol_features
from polstereo.polar.stokes import angles_from_stokes


def stack_from_stokes(s0: float, s1: float, s2: float, channels: int = 1) -> torch.Tensor:
    """(1, 4, C, 2, 3) angle stack of a uniform Stokes vector."""
    stokes = torch.tensor([s0, s1, s2]).reshape(1, 3, 1, 1, 1).expand(1, 3, channels, 2, 3)
    return angles_from_stokes(stokes, axis=1)


def test_intensity_image_is_half_s0():
    image = intensity_image(stack_from_stokes(0.8, 0.3, -0.2, channels=3))
    assert image.shape == (1, 3, 2, 3)
    torch.testing.assert_close(image, torch.full((1, 3, 2, 3), 0.4))


def test_pol_features_are_normalized_stokes():
    features = pol_features(stack_from_stokes(0.8, 0.2, -0.4))
    assert features.shape == (1, 2, 2, 3)
    torch.testing.assert_close(features[:, 0], torch.full((1, 2, 3), 0.25))
    torch.testing.assert_close(features[:, 1], torch.full((1, 2, 3), -0.5))


def test_pol_features_order_s1_of_every_colour_then_s2():
    stack = torch.cat([stack_from_stokes(1.0, 0.1 * (c + 1), -0.1 * (c + 1)) for c in range(3)], dim=2)
    features = pol_features(stack)[0, :, 0, 0]
    torch.testing.assert_close(features, torch.tensor([0.1, 0.2, 0.3, -0.1, -0.2, -0.3]))


def test_pol_features_of_black_pixels_are_zero():
    assert torch.all(pol_features(torch.zeros(1, 4, 1, 2, 2)) == 0)


def test_pol_features_never_exceed_unit_magnitude():
    features = pol_features(torch.rand(2, 4, 1, 8, 8))
    assert (features[:, 0] ** 2 + features[:, 1] ** 2).max() <= 1.0 + 1e-6
    assert math.isfinite(features.abs().max().item())
