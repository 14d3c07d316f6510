"""Linear Stokes parameters from polarizer-angle images, and what derives from them.

Every function is pure and takes either a numpy array or a torch tensor and returns the
same type (torch: differentiable, any device, dtype kept for floating inputs). Integer
inputs are promoted to float32.

Model: a linear polarizer at angle θ transmits

    I(θ) = ½ (S0 + S1 cos 2θ + S2 sin 2θ)

so S0 is the total intensity (I(0°) + I(90°)) and S0/2 the unpolarized-equivalent image.

Angle convention (image coordinates, x right, y down): θ = 0 is image-horizontal and
positive angles turn counter-clockwise as seen on screen, i.e. towards image-up; a 45°
polarizer's transmission axis points to the upper right of the displayed image. This
is the frame of Mitsuba 3's ``stokes`` integrator output. AoLP is reported in [0, π).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, TypeVar

import numpy as np
import torch

from polstereo.errors import PolstereoError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

DEFAULT_ANGLES_DEG: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0)

# Relative condition number beyond which an angle set cannot separate S1 from S2
# (two angles nearly equal modulo 180°): the estimate would amplify noise hopelessly.
_MAX_CONDITION = 1e6
_EPS = 1e-6


# ---------------------------------------------------------------------------- design matrix
def _canonical_angles(angles_deg: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(a) for a in angles_deg)


@functools.lru_cache(maxsize=64)
def _design_matrix(angles_deg: tuple[float, ...]) -> np.ndarray:
    """``(N, 3)`` float64 rows ½·(1, cos 2θ, sin 2θ): intensities = M @ (S0, S1, S2)."""
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    design = 0.5 * np.stack([np.ones_like(theta), np.cos(2 * theta), np.sin(2 * theta)], axis=1)
    design.setflags(write=False)  # cached and shared: nobody may modify it
    return design


@functools.lru_cache(maxsize=64)
def _pseudo_inverse(angles_deg: tuple[float, ...]) -> np.ndarray:
    """``(3, N)`` float64 least-squares estimator of (S0, S1, S2); raises on a bad angle set."""
    if len(angles_deg) < 3:
        raise PolstereoError(
            f"need at least 3 polarizer angles to estimate Stokes S0, S1, S2, got {len(angles_deg)}: "
            f"{list(angles_deg)}")
    design = _design_matrix(angles_deg)
    singular = np.linalg.svd(design, compute_uv=False)
    if singular[-1] <= 0 or singular[0] / singular[-1] > _MAX_CONDITION:
        raise PolstereoError(
            f"polarizer angles {list(angles_deg)} are degenerate: need at least 3 angles that "
            "differ modulo 180 degrees")
    pinv = np.linalg.pinv(design)
    pinv.setflags(write=False)
    return pinv


# ---------------------------------------------------------------------------- array helpers
def _as_float(x: Array) -> Array:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float32)
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _torch_matrix(matrix_fn, angles_deg: tuple[float, ...], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    # Cached so a training step does not copy the matrix host -> device on every call; made
    # outside inference mode so a first call under torch.inference_mode() cannot cache an
    # inference tensor that later autograd-tracked calls would refuse to save for backward.
    with torch.inference_mode(False):
        return torch.tensor(matrix_fn(angles_deg), dtype=dtype, device=device)


@torch.compiler.assume_constant_result
def _traced_matrix(pseudo_inverse: bool, angles_deg: tuple[float, ...], dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """:func:`_torch_matrix` for code under ``torch.compile``: the compiler calls it once
    while tracing and bakes the matrix into the graph as a constant, rather than tracing
    its numpy and cache (which it cannot) or breaking the graph there."""
    return _torch_matrix(_pseudo_inverse if pseudo_inverse else _design_matrix, angles_deg, dtype, device)


def _apply_matrix(matrix_fn, angles_deg: tuple[float, ...], x: Array, axis: int) -> Array:
    """Contract ``matrix_fn(angles_deg)`` (K, N) with ``x``'s ``axis`` (size N); K replaces N."""
    axis = axis % x.ndim
    if isinstance(x, torch.Tensor):
        if torch.compiler.is_compiling():
            m = _traced_matrix(matrix_fn is _pseudo_inverse, angles_deg, x.dtype, x.device)
        else:
            m = _torch_matrix(matrix_fn, angles_deg, x.dtype, x.device)
        return torch.tensordot(m, x, dims=([1], [axis])).movedim(0, axis)
    m = matrix_fn(angles_deg).astype(x.dtype)
    return np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)


def _check_axis(x: Array, axis: int, size: int, what: str) -> None:
    ndim = x.ndim
    if not -ndim <= axis < ndim:
        raise PolstereoError(f"{what}: axis {axis} is out of range for an array of shape {tuple(x.shape)}")
    if x.shape[axis] != size:
        raise PolstereoError(
            f"{what}: expected size {size} along axis {axis}, got shape {tuple(x.shape)}")


def _components(stokes: Array, axis: int, what: str) -> tuple[Array, Array, Array]:
    """S0, S1, S2 taken along ``axis`` (size 3, or 4 with S3 ignored)."""
    stokes = _as_float(stokes)
    ndim = stokes.ndim
    if not -ndim <= axis < ndim or stokes.shape[axis] not in (3, 4):
        raise PolstereoError(
            f"{what}: expected Stokes (S0, S1, S2) of size 3 along axis {axis}, got shape "
            f"{tuple(stokes.shape)}")
    if isinstance(stokes, torch.Tensor):
        s0, s1, s2 = (stokes.select(axis, i) for i in range(3))
    else:
        s0, s1, s2 = (np.take(stokes, i, axis=axis) for i in range(3))
    return s0, s1, s2


def _stack(parts: Sequence[Array], axis: int) -> Array:
    if isinstance(parts[0], torch.Tensor):
        return torch.stack(list(parts), dim=axis)
    return np.stack(parts, axis=axis)


def _linear_magnitude(s1: Array, s2: Array) -> Array:
    """sqrt(S1² + S2²) whose torch gradient is 0, not NaN, where S1 = S2 = 0."""
    r2 = s1 * s1 + s2 * s2
    if isinstance(r2, torch.Tensor):
        positive = r2 > 0
        return torch.where(positive, torch.sqrt(torch.where(positive, r2, torch.ones_like(r2))),
                           torch.zeros_like(r2))
    return np.sqrt(r2)


def _maximum(*xs: Array) -> Array:
    out = xs[0]
    for x in xs[1:]:
        out = torch.maximum(out, x) if isinstance(out, torch.Tensor) else np.maximum(out, x)
    return out


# ---------------------------------------------------------------------------- public API
def stokes_from_angles(images: Array, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                       axis: int = 0) -> Array:
    """Least-squares linear Stokes parameters from N >= 3 polarizer-angle images.

    Args:
        images: intensities with the N polarizer angles along ``axis`` (e.g. ``(A, C, H, W)``
            numpy or ``(B, A, C, H, W)`` torch with ``axis=1``), any units.
        angles_deg: the polarizer angle of each image, degrees, in the convention of this
            module (0 = image-horizontal, counter-clockwise on screen); at least 3 angles
            distinct modulo 180°.
        axis: the angle axis.

    Returns:
        The same type and shape with ``axis`` of size 3 holding (S0, S1, S2), in the units of
        ``images`` (S0 = I(0°) + I(90°)). Exact for 3 angles; least squares for more.

    Raises:
        PolstereoError: fewer than 3 or degenerate angles, or a mismatched axis size.
    """
    angles = _canonical_angles(angles_deg)
    if not (isinstance(images, torch.Tensor) and torch.compiler.is_compiling()):
        _pseudo_inverse(angles)  # validates the angle set before the shapes (numpy: not in a compiled graph)
    images = _as_float(images)
    _check_axis(images, axis, len(angles), "stokes_from_angles: one image per polarizer angle")
    return _apply_matrix(_pseudo_inverse, angles, images, axis)


def angles_from_stokes(stokes: Array, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                       axis: int = 0) -> Array:
    """Polarizer-angle images I(θ) = ½(S0 + S1 cos 2θ + S2 sin 2θ) for each θ in ``angles_deg``.

    The inverse of :func:`stokes_from_angles`: ``axis`` of size 3 (S0, S1, S2) becomes size
    N = ``len(angles_deg)``. Any number of angles (>= 1) is allowed.
    """
    angles = _canonical_angles(angles_deg)
    if not angles:
        raise PolstereoError("angles_from_stokes: need at least one polarizer angle")
    stokes = _as_float(stokes)
    _check_axis(stokes, axis, 3, "angles_from_stokes: Stokes (S0, S1, S2)")
    return _apply_matrix(_design_matrix, angles, stokes, axis)


def dolp(stokes: Array, axis: int = 0, eps: float = _EPS) -> Array:
    """Degree of linear polarization sqrt(S1² + S2²) / S0 in [0, 1], ``axis`` removed.

    Noise can make sqrt(S1² + S2²) exceed S0; the ratio is then clipped to 1. Where S0 <= eps
    (black pixels) the result stays finite: 0 for unpolarized, at most 1 otherwise.
    """
    s0, s1, s2 = _components(stokes, axis, "dolp")
    magnitude = _linear_magnitude(s1, s2)
    # One denominator max(S0, |S|, eps) both clips to [0, 1] and keeps black pixels finite.
    return magnitude / _maximum(s0, magnitude, _full_like(s0, eps))


def aolp(stokes: Array, axis: int = 0) -> Array:
    """Angle of linear polarization ½·atan2(S2, S1) in radians, in [0, π), ``axis`` removed.

    Convention: 0 is image-horizontal, positive angles turn counter-clockwise as seen on
    screen (towards image-up). Unpolarized pixels (S1 = S2 = 0) give 0.
    """
    _, s1, s2 = _components(stokes, axis, "aolp")
    if isinstance(s1, torch.Tensor):
        # atan2's gradient is 0/0 at the origin; route those pixels through (1, 0) instead.
        zero = (s1 == 0) & (s2 == 0)
        angle = 0.5 * torch.atan2(s2, torch.where(zero, torch.ones_like(s1), s1))
        angle = torch.remainder(angle, math.pi)
        # remainder of a tiny negative angle rounds to exactly π; keep the interval half-open.
        return torch.where(angle >= math.pi, angle - math.pi, angle)
    angle = np.mod(0.5 * np.arctan2(s2, s1), np.pi)
    return np.where(angle >= np.pi, angle - np.pi, angle).astype(angle.dtype)


def unpolarized_intensity(stokes: Array, axis: int = 0) -> Array:
    """S0 / 2: the image a camera without polarizer filter would see through a 50 % filter.

    For images in [0, 1] it stays in [0, 1]; it is the input of the base stereo model.
    """
    s0, _, _ = _components(stokes, axis, "unpolarized_intensity")
    return 0.5 * s0


def normalized_stokes(stokes: Array, axis: int = 0, eps: float = _EPS) -> Array:
    """(S1/S0, S2/S0) = DoLP·(cos 2·AoLP, sin 2·AoLP), stacked along ``axis`` (size 2).

    A polarization feature without the AoLP wrap-around at 0/π. Its magnitude equals
    :func:`dolp` (so at most 1: where noise makes sqrt(S1² + S2²) > S0 the pair is scaled back
    onto the unit circle); black pixels (S0 <= eps) stay finite. Differentiable in torch.
    ``n1, n2 = normalized_stokes(s)`` unpacks the two for ``axis=0``.
    """
    s0, s1, s2 = _components(stokes, axis, "normalized_stokes")
    denominator = _maximum(s0, _linear_magnitude(s1, s2), _full_like(s0, eps))
    return _stack([s1 / denominator, s2 / denominator], axis=axis % (s0.ndim + 1))


def hflip_angle_permutation(angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG) -> tuple[int, ...]:
    """Angle-index permutation that keeps an angle stack consistent under a horizontal flip.

    Mirroring an image left-right (or top-bottom) maps every polarization angle θ to -θ
    (AoLP -> π - AoLP), so after flipping the pixels the image filtered at θ is the one that
    was filtered at -θ (mod 180°). Use ``flipped[:, perm]`` / ``stack[perm]``: new index i takes
    old index ``perm[i]``. For 0/45/90/135 this is (0, 3, 2, 1): the 45° and 135° images swap.

    Raises:
        PolstereoError: an angle whose mirror image (-θ mod 180°) is not in the set.
    """
    angles = [float(a) % 180.0 for a in angles_deg]
    perm = []
    for i, angle in enumerate(angles):
        mirrored = (-angle) % 180.0
        matches = [j for j, other in enumerate(angles) if _same_angle_deg(other, mirrored)]
        if not matches:
            raise PolstereoError(
                f"cannot flip polarizer angles {list(angles_deg)}: the mirror of "
                f"{angles_deg[i]} deg ({mirrored:g} deg) is not among them")
        perm.append(matches[0])
    return tuple(perm)


def _same_angle_deg(a: float, b: float, tol: float = 1e-6) -> bool:
    diff = abs(a - b) % 180.0
    return min(diff, 180.0 - diff) < tol


def _full_like(x: Array, value: float) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.full_like(x, value)
    return np.full_like(x, value)
