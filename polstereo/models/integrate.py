"""Gradient-field integration: turn a predicted slope field into a surface.

The polarization of glass says how its surface is oriented, i.e. the *gradient* of the
disparity, not the disparity itself (polstereo.polar.shape). A network can predict a
gradient field; this layer integrates it into a disparity-like map in closed form, so
slope becomes shape across a whole object instead of through a chain of local
convolutions.

:func:`integrate_gradient` solves the screened Poisson problem

    c = argmin_c  Σ |D c − h|² + λ Σ c²

over the image, D the forward differences (``c[x+1] − c[x]``, ``c[y+1] − c[y]``, y down)
with Neumann boundaries, so ``(λ + DᵀD) c = Dᵀ h``. The screening λ > 0 sets the scale:
slopes are integrated over about ``1/sqrt(λ)`` pixels and longer-range offsets fade, so
the result adds shape without drifting a whole image. DᵀD is the Neumann Laplacian,
diagonal in the DCT-II basis, so the solve is exact: transform, divide, transform back
(matrix products, O(HW(H + W))), differentiable in ``h`` and λ, and exportable.
"""

from __future__ import annotations

import math

import torch


def divergence_adjoint(h: torch.Tensor) -> torch.Tensor:
    """``Dᵀ h`` for forward differences: ``(B, 2, H, W) -> (B, 1, H, W)``.

    Channel 0 is the x difference ``c[:, x+1] − c[:, x]`` assigned to pixel x (the last
    column's is unused), channel 1 the y difference (y down, the last row's unused).
    """
    hx, hy = h[:, 0:1], h[:, 1:2]
    hx = hx[..., :-1]
    hy = hy[..., :-1, :]
    zero_col = torch.zeros_like(hx[..., :1])
    zero_row = torch.zeros_like(hy[..., :1, :])
    # (Dᵀh)[x] = h[x − 1] − h[x], with h = 0 outside 0..W−2
    tx = torch.cat([zero_col, hx], dim=-1) - torch.cat([hx, zero_col], dim=-1)
    ty = torch.cat([zero_row, hy], dim=-2) - torch.cat([hy, zero_row], dim=-2)
    return tx + ty


def _dct_basis(n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal DCT-II matrix ``(n, n)`` (row k = mode k) and the Neumann −Δ eigenvalue of
    each mode, ``4 sin²(πk / 2n)``. Built from the size, so exported graphs stay dynamic."""
    k = torch.arange(n, dtype=dtype, device=device)
    basis = torch.cos(math.pi * k[:, None] * (k[None, :] + 0.5) / n)
    scale = torch.where(k == 0, torch.sqrt(1.0 / (k * 0 + n)), torch.sqrt(2.0 / (k * 0 + n)))
    return basis * scale[:, None], 4 * torch.sin(math.pi * k / (2 * n)) ** 2


def screened_poisson(rhs: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Solve ``(λ + DᵀD) c = rhs`` with Neumann boundaries; ``rhs`` ``(B, 1, H, W)``, λ > 0.

    In the DCT-II basis, where DᵀD is diagonal: two matrix products per side, O(HW(H + W)),
    which every exporter supports (ONNX has no DCT, and the TorchScript exporter no FFT).
    """
    h, w = rhs.shape[-2:]
    x = rhs.float()
    basis_y, eigen_y = _dct_basis(h, x.dtype, x.device)
    basis_x, eigen_x = _dct_basis(w, x.dtype, x.device)
    spectrum = basis_y @ x @ basis_x.t()
    spectrum = spectrum / (eigen_y[:, None] + eigen_x[None, :] + lam)
    return (basis_y.t() @ spectrum @ basis_x).to(rhs.dtype)


def integrate_gradient(h: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """The map whose forward differences best match ``h`` ``(B, 2, H, W)``, screened by λ.

    ``(B, 1, H, W)``; zero for ``h = 0``; for ``h = D c`` and small λ, ``c`` minus its
    low-frequency part (scales beyond ``1/sqrt(λ)`` px).
    """
    return screened_poisson(divergence_adjoint(h), lam)
