"""Tests for polstereo.models.integrate: the screened Poisson solve of a slope field."""

from __future__ import annotations

import torch

from polstereo.models.correction import CorrectionConfig, CorrectionModule
from polstereo.models.integrate import divergence_adjoint, integrate_gradient


def forward_differences(c: torch.Tensor) -> torch.Tensor:
    gx, gy = torch.zeros_like(c), torch.zeros_like(c)
    gx[..., :-1] = c[..., 1:] - c[..., :-1]
    gy[..., :-1, :] = c[..., 1:, :] - c[..., :-1, :]
    return torch.cat([gx, gy], dim=1)


def test_solution_satisfies_the_normal_equations():
    torch.manual_seed(0)
    h = torch.randn(2, 2, 13, 21, dtype=torch.float64)
    c = integrate_gradient(h, 0.3).double()
    residual = 0.3 * c + divergence_adjoint(forward_differences(c)) - divergence_adjoint(h)
    assert residual.abs().max() < 1e-4


def test_divergence_adjoint_is_the_transpose_of_forward_differences():
    torch.manual_seed(1)
    c, h = torch.randn(1, 1, 7, 9, dtype=torch.float64), torch.randn(1, 2, 7, 9, dtype=torch.float64)
    h[:, 0, :, -1] = 0  # the unused last column/row of each difference
    h[:, 1, -1, :] = 0
    assert torch.isclose((forward_differences(c) * h).sum(), (c * divergence_adjoint(h)).sum())


def test_exact_gradients_integrate_back_to_the_surface_up_to_its_mean():
    y, x = torch.meshgrid(torch.arange(24.0) - 11.5, torch.arange(32.0) - 15.5, indexing="ij")
    bump = (6.0 * torch.exp(-(x ** 2 + y ** 2) / 60.0))[None, None]
    c = integrate_gradient(forward_differences(bump), 1e-5)
    torch.testing.assert_close(c, bump - bump.mean(), atol=0.02, rtol=0)


def test_zero_slope_gives_zero_and_gradients_reach_slope_and_screening():
    assert torch.equal(integrate_gradient(torch.zeros(1, 2, 5, 6), 0.1), torch.zeros(1, 1, 5, 6))
    h = torch.randn(1, 2, 9, 11, requires_grad=True)
    lam = torch.tensor(0.05, requires_grad=True)
    integrate_gradient(h, lam).square().sum().backward()
    assert h.grad.abs().sum() > 0 and lam.grad.abs() > 0


def test_integrating_module_starts_near_zero_and_learns_its_screening():
    module = CorrectionModule(CorrectionConfig(width=8, dilations=(1,), integrate=True))
    inputs = (torch.randn(2, 2, 37, 53), torch.randn(2, 2, 37, 53), torch.rand(2, 1, 37, 53),
              torch.rand(2, 1, 37, 53) > 0.2)
    raw = module(*inputs)
    assert raw.shape == (2, 1, 37, 53) and raw.abs().max() < 0.1
    raw.sum().backward()
    assert module.log_screening.grad is not None
