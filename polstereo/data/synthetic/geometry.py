"""Ray-surface intersection for the synthetic scenes, vectorised over rays.

Rays are origins ``O`` (``(3, 1)`` shared or ``(3, N)``) and unit directions ``D``
``(3, N)`` in metres, in the left camera's frame (x right, y down, z forward). Two
surface kinds:

- :class:`Plane`: an infinite plane (background walls, floors).
- :class:`Convex`: a unit shape (sphere, cube, cylinder or triangular prism) scaled per
  axis, rotated and placed: ellipsoids, boxes, elliptic cylinders and prisms. Convex shapes give the whole
  entry/exit interval of a ray, which is what refraction through a solid needs.
- :class:`Hollow`: a convex solid with convex holes cut out of it: thin-walled vessels
  (cups, jars, bowls, vases). A hole inside the solid makes a closed cavity, one that
  reaches through its surface makes an opening. It gives the glass segment a ray is in
  or enters next, so the renderer refracts through each wall in turn.

Both give hit distances (``inf`` for a miss), outward unit normals and local
coordinates (for textures) at points on their surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from polstereo.data.synthetic.optics import dot, normalize

EPS_T = 1e-5  # metres: hits closer than this to the origin are the surface the ray left
_TINY = 1e-12

IntervalFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
GradientFn = Callable[[np.ndarray], np.ndarray]
LevelFn = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------- unit shapes
def yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    """The 3x3 rotation by ``pitch`` about x, then ``yaw`` about y (radians; camera frame, y down)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return about_y @ about_x


# the rotation that turns a flat box's local x (its thin axis) to face the camera, local z image-up
FACING = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


def rotation_about(axis, angle: float) -> np.ndarray:
    """The 3x3 rotation by ``angle`` radians about ``axis`` (any length; Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * skew @ skew


def _sphere_interval(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = dot(d, d)
    b = dot(o, d)
    c = dot(o, o) - 1.0
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    miss = disc < 0
    return np.where(miss, np.inf, (-b - sq) / a), np.where(miss, -np.inf, (-b + sq) / a)


def _sphere_gradient(p: np.ndarray) -> np.ndarray:
    return p


def _sphere_level(p: np.ndarray) -> np.ndarray:
    return np.sqrt(dot(p, p))


def _slab(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry/exit distances of rays through the slab -1 <= o + t·d <= 1 (one axis)."""
    d = np.where(np.abs(d) < _TINY, _TINY, d)
    ta, tb = (-1.0 - o) / d, (1.0 - o) / d
    return np.minimum(ta, tb), np.maximum(ta, tb)


def _cube_interval(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _slab(o, d)
    t0, t1 = lo.max(axis=0), hi.min(axis=0)
    miss = t1 < t0
    return np.where(miss, np.inf, t0), np.where(miss, -np.inf, t1)


def _cube_gradient(p: np.ndarray) -> np.ndarray:
    # The face is the axis where the point reaches the cube's surface (|p_k| = 1).
    axis = np.abs(p).argmax(axis=0)
    g = np.zeros_like(p)
    cols = np.arange(p.shape[1])
    g[axis, cols] = np.sign(p[axis, cols])
    return g


def _cube_level(p: np.ndarray) -> np.ndarray:
    return np.abs(p).max(axis=0)


def _cylinder_interval(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder x² + y² <= 1, |z| <= 1."""
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - 1.0
    parallel = a < _TINY
    a_safe = np.where(parallel, 1.0, a)
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    inf = np.asarray(np.inf, dtype=a.dtype)  # keeps float32 rays float32
    s0 = np.where(parallel, np.where(c <= 0, -inf, inf), (-b - sq) / a_safe)
    s1 = np.where(parallel, np.where(c <= 0, inf, -inf), (-b + sq) / a_safe)
    s0 = np.where(~parallel & (disc < 0), np.inf, s0)
    s1 = np.where(~parallel & (disc < 0), -np.inf, s1)
    z0, z1 = _slab(o[2], d[2])
    t0, t1 = np.maximum(s0, z0), np.minimum(s1, z1)
    miss = t1 < t0
    return np.where(miss, np.inf, t0), np.where(miss, -np.inf, t1)


def _cylinder_gradient(p: np.ndarray) -> np.ndarray:
    r = np.sqrt(p[0] * p[0] + p[1] * p[1])
    cap = np.abs(p[2]) > r  # on a cap |z| = 1 >= r; on the side r = 1 >= |z|
    return np.stack([np.where(cap, 0.0, p[0]), np.where(cap, 0.0, p[1]),
                     np.where(cap, np.sign(p[2]), 0.0)]).astype(p.dtype)


def _cylinder_level(p: np.ndarray) -> np.ndarray:
    return np.maximum(np.sqrt(p[0] * p[0] + p[1] * p[1]), np.abs(p[2]))


# The unit triangular prism: an equilateral triangle inscribed in the unit circle (a vertex on
# +y) in the xy plane, |z| <= 1. Its sides are the planes n_k · p = 1/2 with outward normals n_k.
_PRISM_NORMALS = np.array([[np.cos(a), np.sin(a)] for a in np.radians([-90.0, 30.0, 150.0])])
_PRISM_APOTHEM = 0.5


def _prism_interval(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = _slab(o[2], d[2])
    for nx, ny in _PRISM_NORMALS.tolist():
        rate = nx * d[0] + ny * d[1]
        room = _PRISM_APOTHEM - (nx * o[0] + ny * o[1])  # >= 0 on the inner side
        rate = np.where(np.abs(rate) < _TINY, _TINY, rate)
        t_plane = room / rate
        t0 = np.where(rate < 0, np.maximum(t0, t_plane), t0)
        t1 = np.where(rate > 0, np.minimum(t1, t_plane), t1)
    miss = t1 < t0
    return np.where(miss, np.inf, t0), np.where(miss, -np.inf, t1)


def _prism_levels(p: np.ndarray) -> np.ndarray:
    """``(4, N)``: each side's n_k · p / apothem and |z|; the largest is < 1 inside, 1 on the surface."""
    sides = [(nx * p[0] + ny * p[1]) / _PRISM_APOTHEM for nx, ny in _PRISM_NORMALS.tolist()]
    return np.stack(sides + [np.abs(p[2])])


def _prism_gradient(p: np.ndarray) -> np.ndarray:
    face = _prism_levels(p).argmax(axis=0)
    normals = np.zeros((3, 4), dtype=p.dtype)
    normals[:2, :3] = _PRISM_NORMALS.T
    g = normals[:, face]
    g[2] = np.where(face == 3, np.sign(p[2]), 0.0)
    return g


def _prism_level(p: np.ndarray) -> np.ndarray:
    return _prism_levels(p).max(axis=0)


# unit shape -> (entry/exit interval, outward gradient on the surface, level: < 1 inside,
# 1 on the surface); a new primitive is a row.
UNIT_SHAPES: dict[str, tuple[IntervalFn, GradientFn, LevelFn]] = {
    "ellipsoid": (_sphere_interval, _sphere_gradient, _sphere_level),
    "box": (_cube_interval, _cube_gradient, _cube_level),
    "cylinder": (_cylinder_interval, _cylinder_gradient, _cylinder_level),
    "prism": (_prism_interval, _prism_gradient, _prism_level),
}


# ---------------------------------------------------------------------------- surfaces
@dataclass(frozen=True)
class Plane:
    """The infinite plane through ``point`` with unit ``normal``; ``u_axis``, ``v_axis`` span it."""

    point: np.ndarray
    normal: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray

    bounding_radius = np.inf

    @classmethod
    def through(cls, point, normal) -> "Plane":
        """A plane with an orthonormal tangent basis derived from ``normal``."""
        n = np.asarray(normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        helper = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
        u = np.cross(helper, n)
        u /= np.linalg.norm(u)
        return cls(np.asarray(point, dtype=np.float64), n, u, np.cross(n, u))

    def hit_distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance along unit rays to the plane (either side), ``inf`` where missed or behind."""
        n = self.normal[:, None]
        n = n.astype(d.dtype)
        denom = dot(d, n)
        parallel = np.abs(denom) < _TINY
        t = dot(self.point[:, None].astype(d.dtype) - o, n) / np.where(parallel, 1.0, denom)
        return np.where(~parallel & (t > EPS_T), t, np.inf).astype(d.dtype, copy=False)

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.normal[:, None].astype(p.dtype), p.shape)

    def local_coords(self, p: np.ndarray) -> np.ndarray:
        """``(3, N)`` in-plane coordinates (u, v, 0) in metres."""
        q = p - self.point[:, None].astype(p.dtype)
        u, v = self.u_axis[:, None].astype(p.dtype), self.v_axis[:, None].astype(p.dtype)
        return np.stack([dot(q, u), dot(q, v), np.zeros_like(q[0])])


@dataclass(frozen=True)
class Convex:
    """A unit ``shape`` scaled by ``size`` (semi-axes / half-extents / (rx, ry, half height)),
    rotated by ``rotation`` (columns: local axes in the camera frame), centred at ``center``."""

    shape: str
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray

    @property
    def bounding_radius(self) -> float:
        s = np.asarray(self.size, dtype=np.float64)
        return float(np.linalg.norm(s)) if self.shape != "ellipsoid" else float(s.max())

    def _to_unit(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rt = (self.rotation.T / self.size[:, None]).astype(d.dtype)
        return rt @ (o - self.center[:, None].astype(o.dtype)), rt @ d

    def interval(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit distances ``(t0, t1)`` along the rays (``inf``, ``-inf`` for a miss).

        An origin inside the solid gives t0 < 0 < t1.
        """
        ou, du = self._to_unit(o, d)
        return UNIT_SHAPES[self.shape][0](ou, du)

    def hit_distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance to the first surface crossing in front of the origin (``inf`` if none)."""
        t0, t1 = self.interval(o, d)
        return np.where(t0 > EPS_T, t0, np.where(t1 > EPS_T, t1, np.inf)).astype(d.dtype, copy=False)

    def local_coords(self, p: np.ndarray) -> np.ndarray:
        """``(3, N)`` coordinates in the shape's own (unscaled) frame, metres."""
        return self.rotation.T.astype(p.dtype) @ (p - self.center[:, None].astype(p.dtype))

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        """Outward unit normals at surface points ``p`` ``(3, N)``."""
        unit = self.local_coords(p) / self.size[:, None].astype(p.dtype)
        grad = UNIT_SHAPES[self.shape][1](unit) / self.size[:, None].astype(p.dtype)
        return normalize(self.rotation.astype(p.dtype) @ grad)

    def surface_offset(self, p: np.ndarray) -> np.ndarray:
        """``(N,)`` roughly how far (metres) points ``p`` lie from the surface: 0 on it."""
        unit = self.local_coords(p) / self.size[:, None].astype(p.dtype)
        return np.abs(UNIT_SHAPES[self.shape][2](unit) - 1.0) * float(np.min(self.size))


@dataclass(frozen=True)
class Hollow:
    """The solid ``outer`` with the convex ``holes`` cut out: a thin-walled vessel.

    A hole that lies inside ``outer`` is a closed cavity (a sealed jar); one that reaches
    through ``outer``'s surface is an opening (a cup's mouth). Rays are traced through
    every wall: :meth:`interval` gives the glass segment a ray is in, or the next one it
    enters, and :meth:`normal_at` points out of the glass, into a cavity on its inner
    surface.
    """

    outer: Convex
    holes: tuple[Convex, ...]

    @property
    def center(self) -> np.ndarray:
        return self.outer.center

    @property
    def bounding_radius(self) -> float:
        return self.outer.bounding_radius  # the glass lies inside the outer solid

    def interval(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(t0, t1)`` of the first glass segment along each ray that ends in front of the
        origin (t0 < 0 < t1 when the origin is in the glass), ``(inf, -inf)`` for none.

        Glass is [a0, a1] (the outer interval) less the holes' intervals: a segment starts
        at a0 or where a hole is left and ends at a1 or where the next hole begins.
        """
        a0, a1 = self.outer.interval(o, d)
        holes = [h.interval(o, d) for h in self.holes]
        start = a0
        end = a1
        for _ in range(len(holes) + 1):  # segments behind the origin are skipped, one per pass
            for _ in range(len(holes)):  # leave every hole that covers the start (they may overlap)
                for b0, b1 in holes:
                    start = np.where((b0 <= start) & (start < b1), b1, start)
            end = a1
            for b0, b1 in holes:
                end = np.where(b0 > start, np.minimum(end, b0), end)
            behind = (end <= EPS_T) & (start < a1)
            if not behind.any():
                break
            start = np.where(behind, end, start)
        valid = (start < end) & (end > EPS_T) & np.isfinite(start)
        return (np.where(valid, start, np.inf).astype(d.dtype, copy=False),
                np.where(valid, end, -np.inf).astype(d.dtype, copy=False))

    def hit_distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance to the first surface crossing in front of the origin (``inf`` if none)."""
        t0, t1 = self.interval(o, d)
        return np.where(t0 > EPS_T, t0, np.where(t1 > EPS_T, t1, np.inf)).astype(d.dtype, copy=False)

    def local_coords(self, p: np.ndarray) -> np.ndarray:
        return self.outer.local_coords(p)

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        """Unit normals pointing out of the glass at surface points ``p`` ``(3, N)``: the outer
        solid's outward normal, or a hole's inward one on a hole's surface."""
        best = self.outer.surface_offset(p)
        normal = self.outer.normal_at(p)
        for hole in self.holes:
            offset = hole.surface_offset(p)
            closer = offset < best
            normal = np.where(closer[None], -hole.normal_at(p), normal)
            best = np.minimum(best, offset)
        return normal


Surface = Plane | Convex | Hollow


def bounding_candidates(center: np.ndarray, radius: float, o: np.ndarray, d: np.ndarray,
                        t_best: np.ndarray) -> np.ndarray:
    """Indices of rays that enter the bounding sphere before their current best hit ``t_best``.

    A cheap pre-test so exact intersection runs only on rays near an object.
    """
    oc = center[:, None].astype(d.dtype) - o
    b = dot(oc, d)
    c = dot(oc, oc) - radius * radius
    disc = b * b - c
    sq = np.sqrt(np.maximum(disc, 0.0))
    return np.flatnonzero((disc >= 0) & (b + sq > EPS_T) & (b - sq < t_best))
