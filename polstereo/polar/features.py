"""Polarization features for networks: wrap-free, per colour channel, torch tensors.

Angle stacks are ``(B, A, C, H, W)`` float tensors in [0, 1]: A polarizer angles
(default 0/45/90/135 degrees), C colour channels (1 mono, 3 RGB).
"""

from __future__ import annotations

from typing import Sequence

import torch

from polstereo.polar.stokes import (DEFAULT_ANGLES_DEG, normalized_stokes, stokes_from_angles,
                                    unpolarized_intensity)

_EPS = 1e-4


def intensity_image(stack: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG) -> torch.Tensor:
    """Unpolarized-equivalent intensity S0/2, ``(B, A, C, H, W) -> (B, C, H, W)`` in [0, 1]."""
    return unpolarized_intensity(stokes_from_angles(stack, angles_deg, axis=1), axis=1)


def pol_features(stack: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                 eps: float = _EPS) -> torch.Tensor:
    """Normalized Stokes (S1/S0, S2/S0) = DoLP·(cos 2·AoLP, sin 2·AoLP), no angle wrap.

    ``(B, A, C, H, W) -> (B, 2C, H, W)``, channels ordered (S1/S0 for each colour, then
    S2/S0 for each colour); each pixel's pair has magnitude DoLP <= 1. Dark pixels
    (S0 < eps) give ~0 unless their polarized part is comparable to eps.
    """
    s = stokes_from_angles(stack, angles_deg, axis=1)
    features = normalized_stokes(s, axis=1, eps=eps)  # (B, 2, C, H, W)
    return features.flatten(1, 2)
