"""Optics of smooth dielectric interfaces: Fresnel, Snell, and polarization in the image.

Pure numpy functions, vectorised over rays. Vectors are stored component-first,
``(3, N)`` (x right, y down, z forward: the left camera's frame), so a dot product is
three multiplies on contiguous arrays.

Intensity reflectances of an interface from medium ``n1`` into ``n2`` at incidence
cosine cos θi (Fresnel equations, real indices)::

    rs = (n1 cos θi - n2 cos θt) / (n1 cos θi + n2 cos θt)      Rs = rs²
    rp = (n2 cos θi - n1 cos θt) / (n2 cos θi + n1 cos θt)      Rp = rp²
    Ts = 1 - Rs,  Tp = 1 - Rp,  n1 sin θi = n2 sin θt (Snell)

Unpolarized light reflected by the interface is partially polarized perpendicular to
the plane of incidence (s) with degree (Rs - Rp)/(Rs + Rp), which is 1 at Brewster's
angle arctan(n2/n1); transmitted light is partially polarized parallel to it (p) with
degree (Tp - Ts)/(Ts + Tp).
"""

from __future__ import annotations

import numpy as np


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of ``(3, ...)`` vectors (broadcasting), shape ``(...)``."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``(3, ...)`` vectors scaled to unit length (zero vectors stay zero)."""
    return v / np.maximum(np.sqrt(dot(v, v)), eps)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of ``(3, ...)`` vectors."""
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def fresnel_reflectance(cos_i: np.ndarray, n1: float | np.ndarray, n2: float | np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Intensity reflectances ``(Rs, Rp)`` of a smooth interface from ``n1`` into ``n2``.

    ``cos_i`` is the cosine of the angle of incidence (taken as |cos|). Beyond the critical
    angle (total internal reflection) both are 1. At normal incidence both equal
    ((n1 - n2)/(n1 + n2))²; at Brewster's angle arctan(n2/n1) Rp = 0.
    """
    cos_i = np.minimum(np.abs(cos_i), 1.0)
    eta = n1 / n2
    sin2_t = eta * eta * (1.0 - cos_i * cos_i)
    tir = sin2_t >= 1.0
    cos_t = np.sqrt(np.maximum(1.0 - sin2_t, 0.0))
    rs = (n1 * cos_i - n2 * cos_t) / np.maximum(n1 * cos_i + n2 * cos_t, 1e-12)
    rp = (n2 * cos_i - n1 * cos_t) / np.maximum(n2 * cos_i + n1 * cos_t, 1e-12)
    rs2, rp2 = rs * rs, rp * rp
    return np.where(tir, 1.0, rs2).astype(rs2.dtype), np.where(tir, 1.0, rp2).astype(rp2.dtype)


def reflection_dolp(cos_i: np.ndarray, n: float | np.ndarray) -> np.ndarray:
    """DoLP (Rs - Rp)/(Rs + Rp) of unpolarized light reflected off a dielectric of index ``n``."""
    rs, rp = fresnel_reflectance(cos_i, 1.0, n)
    return (rs - rp) / np.maximum(rs + rp, 1e-12)


def brewster_angle(n: float) -> float:
    """Brewster's angle arctan(n) in radians for light arriving from air."""
    return float(np.arctan(n))


def diffuse_dolp(cos_e: np.ndarray, n: float | np.ndarray) -> np.ndarray:
    """DoLP of diffuse reflection leaving a dielectric of index ``n`` at emission cosine ``cos_e``.

    Light scattered below the surface is refracted out (Fresnel transmission from ``n``
    into air), which polarizes it weakly parallel to the plane of emission. Closed form
    (Atkinson & Hancock 2006) with θ the emission zenith angle::

        ρ = (n - 1/n)² sin²θ / (2 + 2n² - (n + 1/n)² sin²θ + 4 cos θ sqrt(n² - sin²θ))

    0 at normal view, (n - 1/n)/(n + 1/n) (≈ 0.38 for n = 1.5) at grazing view.
    """
    cos_e = np.minimum(np.abs(cos_e), 1.0)
    sin2 = 1.0 - cos_e * cos_e
    a = (n - 1.0 / n) ** 2 * sin2
    b = 2.0 + 2.0 * n * n - (n + 1.0 / n) ** 2 * sin2 + 4.0 * cos_e * np.sqrt(n * n - sin2)
    return a / b


def reflect(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Mirror direction of ``d`` about unit normal ``n`` (``(3, N)``; either side of the surface)."""
    return d - 2.0 * dot(d, n) * n


def refract(d: np.ndarray, n: np.ndarray, eta: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snell refraction of unit directions ``d`` at unit normals ``n`` facing against ``d``.

    ``eta`` = n_incident / n_transmitted. Returns ``(t, tir)``: the unit refracted
    directions ``(3, N)`` and a mask of total internal reflection (where ``t`` is the
    mirror direction instead).
    """
    cos_i = -dot(d, n)
    sin2_t = eta * eta * np.maximum(1.0 - cos_i * cos_i, 0.0)
    tir = sin2_t > 1.0
    cos_t = np.sqrt(np.maximum(1.0 - sin2_t, 0.0))
    t = eta * d + (eta * cos_i - cos_t) * n
    if tir.any():
        t = np.where(tir, reflect(d, n), t)
    return normalize(t), tir


def image_angle_cos_sin(e: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cos 2φ, sin 2φ)`` of the image-plane angle φ of 3D field directions ``e``.

    ``e`` ``(3, N)`` is a polarization direction perpendicular to the camera ray
    ``d`` ``(3, N)`` (pinhole camera looking along +z, image x right, y down). Its image
    is the direction in which the projection of a point moves when the point moves
    along ``e``: ∝ (e_x - e_z d_x/d_z, e_y - e_z d_y/d_z). φ is measured from image-horizontal,
    counter-clockwise as seen on screen (towards image-up, i.e. -y). Zero vectors give (1, 0).
    """
    du = e[0] - e[2] * d[0] / d[2]
    dv_up = -(e[1] - e[2] * d[1] / d[2])  # screen-up is -y
    r2 = du * du + dv_up * dv_up
    zero = r2 < 1e-20
    r2 = np.where(zero, 1.0, r2)
    cos2 = np.where(zero, 1.0, (du * du - dv_up * dv_up) / r2)
    sin2 = np.where(zero, 0.0, 2.0 * du * dv_up / r2)
    return cos2, sin2
