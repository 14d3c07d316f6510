"""Tests for polstereo.polar.shape: gradients, the AoLP/shape consistency cost, zenith, loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.polar.shape import (SHAPE_FEATURE_NAMES, disparity_gradient, dolp_of_zenith, gradient_azimuth,
                                   hard_consistency, polarization_angles, shape_consistency, shape_features,
                                   shape_loss, zenith_from_dolp)
from polstereo.polar.stokes import angles_from_stokes, hflip_angle_permutation

H = W = 48


def sphere_disparity() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sphere's disparity d = 100 / Z ``(1, 1, H, W)``, the image-plane azimuth of its normal
    (y up, radial) and the pixels well inside its silhouette."""
    y, x = torch.meshgrid(torch.arange(H) - (H - 1) / 2, torch.arange(W) - (W - 1) / 2, indexing="ij")
    radius = 18.0
    z = 10.0 - torch.sqrt((radius ** 2 - x ** 2 - y ** 2).clamp_min(0)) / 10.0
    inside = (x ** 2 + y ** 2 < (0.8 * radius) ** 2) & (x ** 2 + y ** 2 > 4.0)
    return (100.0 / z)[None, None].double(), torch.atan2(-y, x).double(), inside


def stack_with_aolp(aolp: torch.Tensor, dolp: float = 0.3) -> torch.Tensor:
    """``(1, 4, 1, H, W)`` angle images of light with the given AoLP (rad) and DoLP."""
    stokes = torch.stack([torch.ones_like(aolp), dolp * torch.cos(2 * aolp), dolp * torch.sin(2 * aolp)])
    return angles_from_stokes(0.5 * stokes[:, None], axis=0)[None]


def test_gradient_of_a_plane_is_exact_with_y_turned_up():
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    d = (3.0 + 0.25 * x - 0.1 * y)[None, None]
    g = disparity_gradient(d)
    torch.testing.assert_close(g[0, 0], torch.full((12, 16), 0.25))
    torch.testing.assert_close(g[0, 1], torch.full((12, 16), 0.1))  # d falls downwards = rises upwards


def test_gradient_azimuth_follows_the_aolp_convention():
    y, x = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    rising_up = (20.0 - y)[None, None]  # larger towards image-up: azimuth +90°
    assert gradient_azimuth(disparity_gradient(rising_up))[0, 0, 4, 4].item() == pytest.approx(math.pi / 2)


def test_gradient_rejects_a_wrong_shape():
    with pytest.raises(PolstereoError, match=r"\(B, 1, H, W\)"):
        disparity_gradient(torch.zeros(1, 2, 4, 4))


def test_polarization_angles_recover_dolp_and_aolp():
    aolp = torch.full((H, W), 0.4, dtype=torch.float64)
    dolp, cos2, sin2 = polarization_angles(stack_with_aolp(aolp, 0.25))
    torch.testing.assert_close(dolp, torch.full_like(dolp, 0.25))
    torch.testing.assert_close(cos2, torch.full_like(cos2, math.cos(0.8)))
    torch.testing.assert_close(sin2, torch.full_like(sin2, math.sin(0.8)))


@pytest.mark.parametrize("branch", [0.0, math.pi / 2, math.pi], ids=["transmitted", "specular", "180"])
def test_sphere_disparity_agrees_with_its_rendered_aolp(branch):
    d, azimuth, inside = sphere_disparity()
    _, cos2, sin2 = polarization_angles(stack_with_aolp(azimuth + branch))
    cost = hard_consistency(disparity_gradient(d), cos2, sin2)[0, 0]
    assert cost[inside].mean().item() < 1e-3
    assert shape_consistency(disparity_gradient(d), cos2, sin2)[0, 0][inside].mean().item() < 0.1


def test_flat_disparity_scores_no_agreement_and_a_45_degree_turn_the_worst():
    d, azimuth, inside = sphere_disparity()
    _, cos2, sin2 = polarization_angles(stack_with_aolp(azimuth))
    flat = shape_consistency(disparity_gradient(torch.full_like(d, 12.0)), cos2, sin2)[0, 0]
    torch.testing.assert_close(flat[inside], torch.full_like(flat[inside], 0.5))
    _, cos2, sin2 = polarization_angles(stack_with_aolp(azimuth + math.pi / 4))
    assert hard_consistency(disparity_gradient(d), cos2, sin2)[0, 0][inside].mean().item() > 0.999


def test_cost_is_invariant_to_a_horizontal_flip_of_images_and_disparity():
    d, azimuth, _ = sphere_disparity()
    d = d + 0.3 * torch.arange(W, dtype=d.dtype)  # break the mirror symmetry
    stack = stack_with_aolp(azimuth + 0.3)
    _, cos2, sin2 = polarization_angles(stack)
    cost = shape_consistency(disparity_gradient(d), cos2, sin2)
    flipped_stack = stack.flip(-1)[:, list(hflip_angle_permutation())]
    _, cos2f, sin2f = polarization_angles(flipped_stack)
    cost_flipped = shape_consistency(disparity_gradient(d.flip(-1)), cos2f, sin2f)
    torch.testing.assert_close(cost_flipped.flip(-1), cost)


def test_smooth_cost_is_differentiable_at_a_nearly_flat_map():
    torch.manual_seed(0)
    d = (5.0 + 0.01 * torch.randn(1, 1, 8, 8, dtype=torch.float64)).requires_grad_()
    stack = stack_with_aolp(torch.rand(H, W, dtype=torch.float64))[..., :8, :8]
    _, cos2, sin2 = polarization_angles(stack)
    assert torch.autograd.gradcheck(lambda t: shape_consistency(disparity_gradient(t), cos2, sin2), (d,))


def test_shape_loss_gradient_descent_turns_a_flat_map_towards_the_true_shape():
    d_true, azimuth, inside = sphere_disparity()
    stack = stack_with_aolp(azimuth)
    torch.manual_seed(0)  # a network's output is never exactly flat; an exactly flat map is a saddle
    d = (float(d_true.mean()) + 1e-3 * torch.randn_like(d_true)).requires_grad_()
    mask = inside[None, None]
    start = shape_loss(d, stack, mask=mask).item()
    optimizer = torch.optim.SGD([d], lr=20.0)
    for _ in range(50):
        optimizer.zero_grad()
        shape_loss(d, stack, mask=mask).backward()
        optimizer.step()
    end = shape_loss(d, stack, mask=mask).item()
    assert start == pytest.approx(0.5, abs=0.05)
    assert end < 0.25
    assert shape_loss(d_true, stack, mask=mask).item() < 0.1


def test_shape_loss_ignores_weakly_polarized_pixels():
    d_true, azimuth, _ = sphere_disparity()
    flat = torch.full_like(d_true, 5.0)
    assert shape_loss(flat, stack_with_aolp(azimuth, dolp=0.01), min_dolp=0.02).item() == 0.0


@pytest.mark.parametrize("model", ["diffuse", "specular"])
def test_zenith_from_dolp_inverts_the_fresnel_dolp(model):
    theta = np.array([0.2, 0.5, 0.8]) if model == "diffuse" else np.array([0.2, 0.5, 0.9])
    rho = dolp_of_zenith(theta, 1.5, model)
    recovered = zenith_from_dolp(torch.tensor(rho), 1.5, model).numpy()
    np.testing.assert_allclose(recovered, theta, atol=2e-3)


def test_specular_dolp_is_one_at_brewsters_angle():
    assert dolp_of_zenith(np.array([math.atan(1.5)]), 1.5, "specular")[0] == pytest.approx(1.0)


def test_zenith_rejects_bad_refractive_index_and_model():
    with pytest.raises(PolstereoError, match="refractive index"):
        zenith_from_dolp(torch.zeros(2), n=1.0)
    with pytest.raises(PolstereoError, match="zenith model"):
        dolp_of_zenith(np.zeros(2), model="glossy")


def test_shape_features_channels_and_mirror_signs():
    d, azimuth, _ = sphere_disparity()
    d = (d + 0.3 * torch.arange(W, dtype=d.dtype)).float()
    stack = stack_with_aolp(azimuth + 0.2).float()
    features = shape_features(stack, d)
    assert features.shape == (1, len(SHAPE_FEATURE_NAMES), H, W)
    flipped = shape_features(stack.flip(-1)[:, list(hflip_angle_permutation())], d.flip(-1)).flip(-1)
    sign = torch.tensor([-1.0 if name in ("dolp_sin4", "dolp_sin2", "grad_x") else 1.0
                         for name in SHAPE_FEATURE_NAMES]).view(1, -1, 1, 1)
    torch.testing.assert_close(flipped, features * sign, atol=1e-4, rtol=1e-4)
