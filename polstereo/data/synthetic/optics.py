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
    return _double_angle(*_image_direction(e, d))


def _image_direction(e: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, up) components of the image of 3D directions ``e`` at camera rays ``d`` (see above)."""
    return e[0] - e[2] * d[0] / d[2], -(e[1] - e[2] * d[1] / d[2])  # screen-up is -y


def _double_angle(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cos 2φ, sin 2φ)`` of the angle φ of image directions (u right, v up); (1, 0) for zero ones."""
    r2 = u * u + v * v
    zero = r2 < 1e-20
    r2 = np.where(zero, 1.0, r2)
    return np.where(zero, 1.0, (u * u - v * v) / r2), np.where(zero, 0.0, 2.0 * u * v / r2)


# ---------------------------------------------------------------------------- Stokes and Mueller calculus
# Polarized light along a ray is a Stokes vector (S0, S1, S2, S3) ``(4, C, N)`` in a reference
# frame: a unit vector x perpendicular to the propagation direction k, with y = k × x.
# S1 = I(x) - I(y), S2 = I((x + y)/√2) - I((x - y)/√2); S3 (circular) arises only from the phase
# shift of total internal reflection and matters only where a later one turns it back into S2.
# At an interface the natural frame is x = s, the unit normal of the plane of incidence, and
# y = p = k × s on the incoming and on the outgoing side; in those frames Fresnel reflection and
# transmission are the Mueller matrices
#
#     [[a, b, 0, 0], [b, a, 0, 0], [0, 0, c, e], [0, 0, -e, c]]
#
# with a = (Rs + Rp)/2, b = (Rs - Rp)/2, c + i·e = rs·conj(rp) for reflection (rs, rp the amplitude
# coefficients, complex beyond the critical angle), and a = (Ts + Tp)/2, b = (Ts - Tp)/2,
# c = √(Ts·Tp), e = 0 for transmission (the energy transmittances; radiance's n² factors cancel
# on a path that enters and leaves the glass).
def fresnel_reflection_mueller(cos_i: np.ndarray, n1: float | np.ndarray, n2: float | np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c, e)`` of the Mueller matrix of reflection at a smooth interface from ``n1`` into
    ``n2`` in the s/p frames (see above), each ``(N,)`` like ``cos_i`` (taken as |cos|).

    rs = (n1 cos θi - n2 cos θt)/(n1 cos θi + n2 cos θt), rp = (n2 cos θi - n1 cos θt)/(n2 cos θi +
    n1 cos θt) with p = k × s on both sides, so that at normal incidence rp = -rs: a mirror turns
    the handedness of the frame, and ±45° light comes back with S2 negated. Beyond the critical
    angle cos θt is imaginary, |rs| = |rp| = 1 and the phase difference turns S2 into S3.
    """
    cos_i = np.minimum(np.abs(cos_i), 1.0)
    eta = n1 / n2
    sin2_t = eta * eta * (1.0 - cos_i * cos_i)
    cos_t = np.sqrt(np.maximum(1.0 - sin2_t, 0.0))
    rs = (n1 * cos_i - n2 * cos_t) / np.maximum(n1 * cos_i + n2 * cos_t, 1e-12)
    rp = (n2 * cos_i - n1 * cos_t) / np.maximum(n2 * cos_i + n1 * cos_t, 1e-12)
    a, b, c = 0.5 * (rs * rs + rp * rp), 0.5 * (rs * rs - rp * rp), rs * rp
    e = np.zeros_like(c)
    tir = np.flatnonzero(sin2_t > 1.0)
    if tir.size:  # cos θt = i·sqrt(sin²θt - 1): unit amplitudes, a phase difference
        ci = cos_i[tir].astype(np.float64)
        ct = 1j * np.sqrt(sin2_t[tir].astype(np.float64) - 1.0)
        n1_, n2_ = (n[tir] if np.ndim(n) else n for n in (n1, n2))
        rs_tir = (n1_ * ci - n2_ * ct) / (n1_ * ci + n2_ * ct)
        rp_tir = (n2_ * ci - n1_ * ct) / (n2_ * ci + n1_ * ct)
        cross_term = rs_tir * np.conj(rp_tir)
        a[tir], b[tir], c[tir], e[tir] = 1.0, 0.0, cross_term.real, cross_term.imag
    return tuple(np.asarray(v, dtype=np.float32) for v in (a, b, c, e))


def fresnel_transmission_mueller(cos_i: np.ndarray, n1: float | np.ndarray, n2: float | np.ndarray
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c, e)`` of the Mueller matrix of transmission from ``n1`` into ``n2`` (see above):
    Ts = 1 - Rs, Tp = 1 - Rp (0 beyond the critical angle), c = √(Ts·Tp), e = 0; ``(N,)`` float32."""
    rs, rp = fresnel_reflectance(cos_i, n1, n2)
    return transmission_of(0.5 * (rs + rp), 0.5 * (rs - rp))


def transmission_of(a_reflected: np.ndarray, b_reflected: np.ndarray) -> tuple[np.ndarray, ...]:
    """The transmission Mueller ``(a, b, c, e)`` of an interface whose reflection has ``a``, ``b``:
    Ts = 1 - Rs, Tp = 1 - Rp."""
    ts = np.maximum(1.0 - (a_reflected + b_reflected), 0.0).astype(np.float32)
    tp = np.maximum(1.0 - (a_reflected - b_reflected), 0.0).astype(np.float32)
    return 0.5 * (ts + tp), 0.5 * (ts - tp), np.sqrt(ts * tp), np.zeros_like(ts)


def apply_mueller(stokes: np.ndarray, mueller: tuple[np.ndarray, ...]) -> np.ndarray:
    """``(4, C, N)`` Stokes vectors times the interface Mueller matrices ``(a, b, c, e)`` (each ``(N,)``)."""
    a, b, c, e = (m[None] for m in mueller)
    s0, s1, s2, s3 = stokes
    return np.stack([a * s0 + b * s1, b * s0 + a * s1, c * s2 + e * s3, c * s3 - e * s2])


def perpendicular(d: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each unit direction ``d`` ``(3, N)`` (a reference frame for
    light that has no preferred one)."""
    helper = np.where(np.abs(d[1:2]) < 0.9, np.array([[0.0], [1.0], [0.0]], d.dtype),
                      np.array([[1.0], [0.0], [0.0]], d.dtype))
    return normalize(cross(helper, d)).astype(d.dtype, copy=False)


def s_direction(d: np.ndarray, normal: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Unit normals ``(3, N)`` of the planes of incidence of rays ``d`` at surface normals ``normal``
    (the s-direction); where the two are parallel (normal incidence, no plane), ``fallback`` (unit
    vectors perpendicular to ``d``; default :func:`perpendicular`)."""
    return unit_or_perpendicular(cross(d, normal), d, 1e-6, fallback)


def unit_or_perpendicular(v: np.ndarray, d: np.ndarray, min_length: float, fallback: np.ndarray | None = None
                          ) -> np.ndarray:
    """``v`` ``(3, N)`` normalized, in ``d``'s dtype; where shorter than ``min_length`` (no direction
    of its own), ``fallback`` there (unit vectors perpendicular to ``d``; default :func:`perpendicular`)."""
    length = np.sqrt(dot(v, v))
    degenerate = np.flatnonzero(length < min_length)
    length[degenerate] = 1.0
    v = v / length
    if degenerate.size:
        v[:, degenerate] = perpendicular(d[:, degenerate]) if fallback is None else fallback[:, degenerate]
    return v.astype(d.dtype, copy=False)


def rotate_stokes(stokes: np.ndarray, frame_from: np.ndarray, frame_to: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``(4, C, N)`` Stokes vectors of light travelling along unit ``k`` ``(3, N)`` re-expressed from
    reference frame ``frame_from`` to ``frame_to`` (unit vectors perpendicular to ``k``).

    With x' = cos φ·x + sin φ·y (y = k × x): S1' = cos 2φ·S1 + sin 2φ·S2, S2' = -sin 2φ·S1 + cos 2φ·S2.
    """
    cos_phi = dot(frame_from, frame_to)
    sin_phi = dot(k, cross(frame_from, frame_to))
    cos2, sin2 = (cos_phi * cos_phi - sin_phi * sin_phi)[None], (2.0 * cos_phi * sin_phi)[None]
    s0, s1, s2, s3 = stokes
    return np.stack([s0, cos2 * s1 + sin2 * s2, cos2 * s2 - sin2 * s1, s3])


def stokes_to_image(stokes: np.ndarray, frame: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Linear Stokes ``(3, C, N)`` in the image convention of light reaching a camera along rays
    ``d`` ``(3, N)`` (it travels along -d) from Stokes ``(4, C, N)`` in reference frame ``frame``.

    The major axis of the polarization, cos ψ·x + sin ψ·y with tan 2ψ = S2/S1, is projected into
    the image (:func:`image_angle_cos_sin`); its degree is kept. For light polarized along x this
    is exactly what projecting x does.
    """
    s0, s1, s2 = stokes[0], stokes[1], stokes[2]
    linear = np.sqrt(s1 * s1 + s2 * s2)
    ratio = s1 / np.maximum(linear, 1e-30)
    cos_psi = np.sqrt(np.clip(0.5 * (1.0 + ratio), 0.0, 1.0))
    sin_psi = np.where(s2 < 0, -1.0, 1.0) * np.sqrt(np.clip(0.5 * (1.0 - ratio), 0.0, 1.0))
    (xu, xv), (yu, yv) = _image_direction(frame, d), _image_direction(cross(-d, frame), d)
    # the image of the axis: linear in it
    cos2, sin2 = _double_angle(cos_psi * xu + sin_psi * yu, cos_psi * xv + sin_psi * yv)
    return np.stack([s0, linear * cos2, linear * sin2]).astype(np.float32, copy=False)
