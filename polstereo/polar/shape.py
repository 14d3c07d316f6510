"""Surface orientation from polarization, checked against the shape a disparity implies.

The AoLP φ of glass equals the image-plane azimuth α of the surface normal or α + 90°
(mod 180°), and a disparity map implies α through its gradient. ``cost = sin²(2(φ − α))``
is 0 on either branch, 0.5 on average for an unrelated orientation (and, in the smooth
form :func:`shape_consistency`, for a flat map), 1 at worst. The zenith angle θ that DoLP
encodes (:func:`zenith_from_dolp`) gives the gradient's size, ``|∇d| ≈ (d / f)·tan θ``.

Conventions (those of :mod:`polstereo.polar.stokes`): angles in radians, image x right,
y down, angles counter-clockwise positive on screen, so the azimuth of a gradient is
``atan2(−∂d/∂y, ∂d/∂x)`` (y turned up). Disparity ``(B, 1, H, W)`` in pixels; gradients in
px of disparity per px; f in pixels. Pure functions, torch (:func:`dolp_of_zenith`: numpy),
differentiable where they say so, ONNX-exportable. Why and how:
docs/polarization.md#surface-orientation-shapepy.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from polstereo.errors import PolstereoError
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG, stokes_from_angles

DEFAULT_EPSILON = 0.02  # px/px: gradients much smaller than this count as flat in the smooth cost
DEFAULT_REFRACTIVE_INDEX = 1.5
ZENITH_MODELS = ("diffuse", "specular")
_EPS = 1e-4
_FLAT_SLOPE = 1e-4  # px/px: below this a gradient has no azimuth for the exact cost
_TINY_SLOPE = 1e-6  # px/px: keeps the unit gradient direction smooth (and 0) at an exactly flat pixel


def _sobel_kernels(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(2, 1, 3, 3)``: ∂/∂x and ∂/∂y (y down) Sobel kernels scaled to unit gain."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device) / 8.0
    return torch.stack([kx, kx.t()]).unsqueeze(1)


def _linear_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims by ``r`` with the odd (point) reflection ``2·edge − mirror``, which
    continues a plane exactly, so the border gets the same gradient as the inside.
    Falls back to replicate padding on images too small to mirror."""
    if min(x.shape[-2:]) <= r:
        return F.pad(x, (r, r, r, r), mode="replicate")
    x = torch.cat([2 * x[..., :, :1] - x[..., :, 1:r + 1].flip(-1), x,
                   2 * x[..., :, -1:] - x[..., :, -r - 1:-1].flip(-1)], dim=-1)
    return torch.cat([2 * x[..., :1, :] - x[..., 1:r + 1, :].flip(-2), x,
                      2 * x[..., -1:, :] - x[..., -r - 1:-1, :].flip(-2)], dim=-2)


def gaussian_kernel(sigma: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """1-D Gaussian of standard deviation ``sigma`` px, radius ⌈2σ⌉ (at least 1), unit sum."""
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = gaussian_kernel(sigma, x.dtype, x.device)
    radius = len(k) // 2
    x = _linear_pad(x, radius)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def disparity_gradient(disparity: torch.Tensor, blur_sigma: float = 1.0) -> torch.Tensor:
    """``(B, 1, H, W) -> (B, 2, H, W)``: (∂d/∂x, ∂d/∂y_up) in px per px, y turned up.

    A Sobel gradient of the disparity after a light Gaussian blur (``blur_sigma`` px, 0 =
    none), the border padded by point reflection, so a plane ``d = a·x + b·y_down`` gives
    ``(a, −b)`` everywhere, borders included (to float rounding). Non-finite inputs must be filled before (they would spread).
    Differentiable.
    """
    if disparity.dim() != 4 or disparity.shape[1] != 1:
        raise PolstereoError(f"disparity_gradient expects (B, 1, H, W), got {tuple(disparity.shape)}")
    d = _gaussian_blur(disparity, blur_sigma) if blur_sigma > 0 else disparity
    g = F.conv2d(_linear_pad(d, 1), _sobel_kernels(d.dtype, d.device))
    return g * torch.tensor([1.0, -1.0], dtype=g.dtype, device=g.device).view(1, 2, 1, 1)


def gradient_azimuth(gradient: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W) -> (B, 1, H, W)``: the azimuth ``atan2(g_y_up, g_x)`` in (−π, π]."""
    return torch.atan2(gradient[:, 1:2], gradient[:, 0:1])


def polarization_angles(stack: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                        eps: float = _EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DoLP, ``cos 2φ`` and ``sin 2φ`` of an angle stack, colour channels pooled.

    ``(B, A, C, H, W)`` in [0, 1] -> three ``(B, 1, H, W)``: DoLP in [0, 1] and the unit
    vector of the doubled AoLP (``(1, 0)`` where the light is unpolarized). The Stokes
    parameters are summed over the C colour channels before the ratios are taken.
    """
    s = stokes_from_angles(stack, angles_deg, axis=1).sum(dim=2)  # (B, 3, H, W)
    s0, s1, s2 = s[:, 0:1], s[:, 1:2], s[:, 2:3]
    magnitude = torch.sqrt(s1 * s1 + s2 * s2 + 1e-12)
    dolp = magnitude / torch.maximum(torch.maximum(s0, magnitude), torch.full_like(s0, eps))
    polarized = magnitude > 1e-6
    cos2 = torch.where(polarized, s1 / magnitude, torch.ones_like(s1))
    sin2 = torch.where(polarized, s2 / magnitude, torch.zeros_like(s2))
    return dolp, cos2, sin2


def quadrupled_angle(cos2: torch.Tensor, sin2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos 4φ, sin 4φ) from (cos 2φ, sin 2φ): the AoLP with the 90° ambiguity folded away
    (specular and diffuse branches map to the same value)."""
    return cos2 * cos2 - sin2 * sin2, 2 * cos2 * sin2


def shape_consistency(gradient: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor,
                      epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Per-pixel disagreement ``(B, 1, H, W)`` in [0, 1] between a disparity gradient and
    the AoLP, smooth and differentiable everywhere.

    ``½·(1 − cos(4(φ − α))·|g| / (|g| + ε))``, α the gradient's azimuth: equal to
    sin²(2(φ − α)) where ``|g| ≫ ε``, tending to 0.5 (no agreement) where the map is flat
    (``|g| ≪ ε``), so a flat surface is not a free minimum. The agreement grows *linearly*
    with |g| near flat, so a nearly flat map still gets a useful gradient towards the
    slope the AoLP allows (a form in |g|⁴ would leave it stuck). Invariant to
    φ → φ + 90° and φ → φ + 180°, to the sign of the gradient, and to mirroring
    (x → −x with φ → −φ). ``gradient`` as from :func:`disparity_gradient` (y up).
    """
    gx, gy = gradient[:, 0:1], gradient[:, 1:2]
    magnitude = torch.sqrt(gx * gx + gy * gy + _TINY_SLOPE ** 2)   # smooth at g = 0
    ux, uy = gx / magnitude, gy / magnitude
    ux2, uy2 = ux * ux, uy * uy
    cos4a = ux2 * ux2 - 6 * ux2 * uy2 + uy2 * uy2                 # Re (ux + i uy)^4 = cos 4α
    sin4a = 4 * ux * uy * (ux2 - uy2)                               # Im (ux + i uy)^4 = sin 4α
    cos4, sin4 = quadrupled_angle(cos2, sin2)
    agreement = (cos4 * cos4a + sin4 * sin4a) * (magnitude / (magnitude + epsilon))
    return 0.5 * (1.0 - agreement)


def hard_consistency(gradient: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """sin²(2(φ − α)), α = :func:`gradient_azimuth` (0.5 where ``|g| < 1e-4`` px/px: a flat
    map's azimuth is undefined, and float rounding leaves it ~1e-7 in random directions). For evidence; :func:`shape_consistency` for learning."""
    flat = (gradient * gradient).sum(dim=1, keepdim=True) < _FLAT_SLOPE ** 2
    return torch.where(flat, torch.full_like(gradient[:, :1], 0.5), shape_consistency(gradient, cos2, sin2, epsilon=0.0))


# ---------------------------------------------------------------------------- zenith
def dolp_of_zenith(theta: np.ndarray, n: float = DEFAULT_REFRACTIVE_INDEX, model: str = "diffuse") -> np.ndarray:
    """DoLP of light leaving a dielectric of refractive index ``n`` at zenith ``theta`` (rad).

    ``diffuse``: light transmitted out of the surface (Atkinson & Hancock 2006, eq. 4),
    monotonic in θ on [0, π/2]. ``specular``: light reflected by it (their eq. 3), rising to
    1 at Brewster's angle ``atan(n)`` and falling after.
    """
    if model not in ZENITH_MODELS:
        raise PolstereoError(f"unknown zenith model {model!r}; expected one of {', '.join(ZENITH_MODELS)}")
    s2 = np.sin(theta) ** 2
    root = np.sqrt(n * n - s2)
    if model == "diffuse":
        return (n - 1 / n) ** 2 * s2 / (2 + 2 * n * n - (n + 1 / n) ** 2 * s2 + 4 * np.cos(theta) * root)
    return 2 * s2 * np.cos(theta) * root / (n * n - s2 - n * n * s2 + 2 * s2 * s2)


@lru_cache(maxsize=16)
def _zenith_table(n: float, model: str, size: int = 257) -> tuple[float, tuple[float, ...]]:
    """(ρ_max, θ at ``size`` values of DoLP ρ evenly spaced in sqrt(ρ / ρ_max)) on the monotonic
    branch; sqrt because ρ grows like θ² near normal incidence."""
    upper = math.pi / 2 - 1e-6 if model == "diffuse" else math.atan(n)
    theta = np.linspace(0.0, upper, 20001)
    rho = dolp_of_zenith(theta, n, model)
    grid = rho[-1] * np.linspace(0.0, 1.0, size) ** 2
    return float(rho[-1]), tuple(float(t) for t in np.interp(grid, rho, theta))


@lru_cache(maxsize=16)
def _zenith_tensor(n: float, model: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # (size + 1,): the table, then ρ_max; cached per device, made outside inference mode
    # (as polstereo.polar.stokes does for its matrices)
    rho_max, table = _zenith_table(n, model)
    with torch.inference_mode(False):
        return torch.tensor(table + (rho_max,), dtype=dtype, device=device)


@torch.compiler.assume_constant_result
def _traced_zenith_tensor(n: float, model: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`_zenith_tensor` under ``torch.compile``: baked into the graph as a constant."""
    return _zenith_tensor(n, model, dtype, device)


def zenith_from_dolp(dolp: torch.Tensor, n: float = DEFAULT_REFRACTIVE_INDEX, model: str = "diffuse") -> torch.Tensor:
    """Zenith angle θ (rad) of the surface normal that would give ``dolp`` (any shape).

    Inverts :func:`dolp_of_zenith` on its monotonic branch (for ``specular`` the branch
    below Brewster's angle, where most glass reflections seen head-on lie) by linear
    interpolation in a table; DoLP beyond the branch's maximum gives the branch's end.
    Not differentiable in ``dolp`` (piecewise linear); ONNX-exportable (a gather).
    """
    if not n > 1:
        raise PolstereoError(f"refractive index must be > 1, got {n}")
    if model not in ZENITH_MODELS:
        raise PolstereoError(f"unknown zenith model {model!r}; expected one of {', '.join(ZENITH_MODELS)}")
    lookup = _traced_zenith_tensor if torch.compiler.is_compiling() else _zenith_tensor
    packed = lookup(float(n), model, dolp.dtype, dolp.device)
    values, rho_max = packed[:-1], packed[-1]
    size = values.shape[0]
    position = torch.sqrt(torch.minimum(dolp.clamp_min(0.0), rho_max) / rho_max) * (size - 1)
    low = position.floor().clamp(max=size - 2)
    frac = position - low
    low = low.long()
    return torch.lerp(values[low], values[low + 1], frac)


# ---------------------------------------------------------------------------- features for networks
SHAPE_FEATURE_NAMES = ("dolp", "dolp_cos4", "dolp_sin4", "dolp_cos2", "dolp_sin2", "tan_zenith",
                       "grad_x", "grad_y", "consistency")
SHAPE_FEATURE_SCALE = 4.0  # glass DoLP is ~0.05-0.4: bring the polarization channels to the others' scale


def shape_features(stack: torch.Tensor, disparity: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                   epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """The shape cues of one view for a correction network, ``(B, 9, H, W)``.

    Channels (:data:`SHAPE_FEATURE_NAMES`): DoLP; DoLP·(cos 4φ, sin 4φ) (orientation
    with the 90° branch folded away); DoLP·(cos 2φ, sin 2φ); tan θ of the diffuse zenith
    estimate (clipped to 3); the disparity's gradient (x, y up, px/px); and the DoLP-weighted
    consistency of that gradient with the AoLP (:func:`shape_consistency`). Polarization
    channels are multiplied by :data:`SHAPE_FEATURE_SCALE`. ``stack`` ``(B, A, C, H, W)``
    in [0, 1]; ``disparity`` ``(B, 1, H, W)`` in px (e.g. the base's estimate).
    A horizontal flip of the inputs (with the angle images mirrored) flips every channel
    and negates ``dolp_sin4``, ``dolp_sin2`` and ``grad_x``.
    """
    dolp, cos2, sin2 = polarization_angles(stack, angles_deg)
    cos4, sin4 = quadrupled_angle(cos2, sin2)
    gradient = disparity_gradient(disparity)
    tan_zenith = torch.tan(zenith_from_dolp(dolp.detach())).clamp(max=3.0)
    consistency = dolp * shape_consistency(gradient, cos2, sin2, epsilon)
    k = SHAPE_FEATURE_SCALE
    return torch.cat([k * dolp, k * dolp * cos4, k * dolp * sin4, k * dolp * cos2, k * dolp * sin2,
                      tan_zenith, gradient, k * consistency], dim=1)


def shape_loss(disparity: torch.Tensor, stack: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
               mask: torch.Tensor | None = None, min_dolp: float = 0.02,
               epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Label-free shape-consistency loss: the DoLP-weighted mean of
    :func:`shape_consistency` of ``disparity``'s gradient against ``stack``'s AoLP.

    Only pixels with DoLP >= ``min_dolp`` (where the AoLP is reliable) and inside ``mask``
    (bool ``(B, 1, H, W)``, optional) count. 0-dim float32 tensor; 0 when no pixel counts.
    Differentiable in ``disparity``; ``stack`` is treated as data.
    """
    with torch.no_grad():
        dolp, cos2, sin2 = polarization_angles(stack.float(), angles_deg)
        weight = dolp * (dolp >= min_dolp)
        if mask is not None:
            weight = weight * mask.to(weight.dtype)
    cost = shape_consistency(disparity_gradient(disparity.float()), cos2, sin2, epsilon)
    return (cost * weight).sum() / weight.sum().clamp_min(1e-6)
