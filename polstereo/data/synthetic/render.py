"""Vectorised ray casting of a polarized stereo pair and its ground truth.

Each view is ray cast on its own (never warped from the other), so occlusions, refraction
and specular reflections are view dependent. Per pixel the camera ray's first hit is
shaded into linear Stokes parameters (S0, S1, S2), radiometric units, by one of two
models (``Scene.polarization``): ``"mueller"`` (:func:`shade_stokes`, the default: every
interface applies its Fresnel Mueller matrix in the frame of its own plane of incidence;
glass by :func:`_glass_stokes`) or ``"shared-plane"`` (:func:`shade`, the earlier
generator, kept so its data sets can be made again).

Conventions: the left camera's frame in metres (x right, y down, z forward); the angle of
polarization is projected into the image, from image-horizontal, counter-clockwise on
screen (that of :mod:`polstereo.polar.stokes`). Both models, their limits and the
comparison with Mitsuba 3: docs/synthetic.md#the-optics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polstereo.data.synthetic.geometry import Plane, bounding_candidates
from polstereo.data.synthetic.optics import (apply_mueller, cross, diffuse_dolp, dot, fresnel_reflectance,
                                             fresnel_reflection_mueller, fresnel_transmission_mueller,
                                             image_angle_cos_sin, normalize, perpendicular, reflect, refract,
                                             rotate_stokes, s_direction, stokes_to_image, transmission_of,
                                             unit_or_perpendicular)
from polstereo.data.synthetic.scene import MATERIAL_KINDS, Scene

MAX_TRACE_DEPTH = 3        # camera ray + two pieces of glass (two solids, or a vessel's near and far walls)
MAX_INTERNAL_BOUNCES = 3   # total internal reflections followed inside one solid
# Mueller tracing (Scene.polarization "mueller"): reflections inside glass followed per piece, and the
# smallest share of a pixel a partial internal reflection must still be able to carry to be followed
MAX_INTERNAL_REFLECTIONS = 10
MIN_INTERNAL_REFLECTANCE = 0.01
MAX_THIN_WALL_REFLECTIONS = 8  # light guided along a thin wall rarely finds its way out sooner
_NUDGE = 1e-4              # metres: start secondary rays off the surface they leave
_OCCLUSION_TOL = 1e-3      # relative: the right camera's ray must reach the point within this


@dataclass
class ViewRender:
    """One rendered view.

    stokes: ``(3, C, H, W)`` float32 linear Stokes (S0, S1, S2), radiometric units.
    depth: ``(H, W)`` z (metres) of the first surface hit; ``inf`` where nothing was hit.
    object_index: ``(H, W)`` index into ``scene.objects`` of the first hit, -1 for none.
    points: ``(3, H*W)`` first-hit points (``inf`` where none).
    """

    stokes: np.ndarray
    depth: np.ndarray
    object_index: np.ndarray
    points: np.ndarray


@dataclass
class PairRender:
    """A rendered stereo pair with ground truth for the left view.

    disparity ``(H, W)`` float32 f·B/Z of the first surface hit (NaN where none);
    transparent, occlusion ``(H, W)`` bool (occlusion: the first-hit point is hidden from
    the right camera or falls outside its image); kind ``(H, W)`` material kind index
    (:data:`~polstereo.data.synthetic.scene.MATERIAL_KINDS`, -1 for none).
    """

    left: ViewRender
    right: ViewRender
    disparity: np.ndarray
    transparent: np.ndarray
    occlusion: np.ndarray
    kind: np.ndarray


# ---------------------------------------------------------------------------- intersection
def closest_hit(scene: Scene, o: np.ndarray, d: np.ndarray, with_glass: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest surface along each ray: distances ``(N,)`` (``inf`` = none) and object indices (-1 = none)."""
    n = d.shape[1]
    t_best = np.full(n, np.inf, dtype=np.float32)
    index = np.full(n, -1, dtype=np.int32)
    shared_origin = o.shape[1] == 1
    for k, obj in enumerate(scene.objects):
        if not with_glass and obj.material.kind == "glass":
            continue
        surf = obj.surface
        if not isinstance(surf, Plane):  # bounded: Convex or Hollow
            sel = bounding_candidates(surf.center, surf.bounding_radius, o, d, t_best)
            if sel.size == 0:
                continue
            t = surf.hit_distance(o if shared_origin else o[:, sel], d[:, sel])
            closer = t < t_best[sel]
            t_best[sel[closer]] = t[closer]
            index[sel[closer]] = k
        else:
            t = surf.hit_distance(o, d)
            closer = t < t_best
            t_best = np.where(closer, t, t_best)
            index = np.where(closer, k, index)
    return t_best, index


# ---------------------------------------------------------------------------- shading
def _take(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    return a if a.shape[1] == 1 else a[:, sel]


def _hits_by_object(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, index: np.ndarray):
    """Per object that rays hit: ``(obj, sel, ds, p, nrm)``, the rays' indices, directions and
    hit points, and the surface normal turned against the arriving ray (both shading models)."""
    for k, obj in enumerate(scene.objects):
        sel = np.flatnonzero(index == k)
        if sel.size == 0:
            continue
        ds = d[:, sel]
        p = _take(o, sel) + t[sel] * ds
        nrm = obj.surface.normal_at(p).astype(np.float32, copy=False)
        facing = dot(nrm, ds) > 0  # the side the ray arrives on
        yield obj, sel, ds, p, np.where(facing, -nrm, nrm)


def shade(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, index: np.ndarray, depth: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radiance leaving the first hits towards the rays' origins.

    Returns ``s0`` ``(C, N)`` total radiance, ``s_lin`` ``(C, N)`` its linearly polarized
    part signed relative to the hit's s-direction (+ perpendicular, - parallel to the
    plane of incidence), and ``normals`` ``(3, N)`` facing the rays (zero where no hit).
    Rays that hit nothing see the environment, unpolarized.
    """
    channels = scene.channels
    n_rays = d.shape[1]
    s0 = np.zeros((channels, n_rays), dtype=np.float32)
    s_lin = np.zeros_like(s0)
    normals = np.zeros((3, n_rays), dtype=np.float32)
    miss = np.flatnonzero(index < 0)
    if miss.size:
        s0[:, miss] = scene.environment.radiance(d[:, miss])
    for obj, sel, ds, p, nrm in _hits_by_object(scene, o, d, t, index):
        if obj.material.kind == "glass":
            a, b = _shade_glass(scene, obj, p, ds, nrm, depth)
        else:
            a, b = _shade_opaque(scene, obj, p, ds, nrm)
        s0[:, sel], s_lin[:, sel], normals[:, sel] = a, b, nrm
    return s0, s_lin, normals


def _shade_opaque(scene: Scene, obj, p: np.ndarray, d: np.ndarray, nrm: np.ndarray, coat: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """S0 and the linear part along s of an opaque surface: diffuse, plus (``coat``) a glossy
    material's mirror reflection of the environment."""
    mat = obj.material
    # The pixel footprint as seen from the LEFT camera in both views, so both get the same
    # band-limited texture; slant stretches one axis by 1/cos, take the geometric mean.
    dist = np.sqrt(dot(p, p))
    slant_cos = np.abs(dot(nrm, p)) / np.maximum(dist, 1e-9)
    footprint = dist / scene.rig.focal_px / np.sqrt(np.maximum(slant_cos, 0.05))
    if mat.texture is None:
        albedo = np.full((scene.channels, p.shape[1]), 0.5, dtype=np.float32)
    else:
        albedo = mat.texture.albedo(obj.surface.local_coords(p), footprint)
    irradiance = scene.ambient[:, None] * (0.8 - 0.2 * nrm[1])[None]  # more sky light on up-facing parts
    for direction, radiance in zip(scene.light_dirs, scene.light_radiance):
        lambert = np.maximum(nrm[0] * direction[0] + nrm[1] * direction[1] + nrm[2] * direction[2], 0.0)
        irradiance = irradiance + radiance[:, None] * lambert[None]
    s0 = albedo * irradiance
    cos_e = -dot(d, nrm)
    # Diffuse light is polarized parallel to the plane of emission: negative along s.
    s_lin = -s0 * (mat.depolarization * diffuse_dolp(cos_e, mat.ior))[None]
    if coat and mat.kind == "glossy" and mat.specular > 0:
        rs, rp = fresnel_reflectance(cos_e, 1.0, mat.ior)
        env = scene.environment.radiance(reflect(d, nrm)) * mat.specular
        s0 = s0 + env * (0.5 * (rs + rp))[None]
        s_lin = s_lin + env * (0.5 * (rs - rp))[None]
    return s0.astype(np.float32, copy=False), s_lin.astype(np.float32, copy=False)


def _shade_glass(scene: Scene, obj, p: np.ndarray, d: np.ndarray, nrm: np.ndarray, depth: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    mat = obj.material
    ior = mat.ior
    cos_i = -dot(d, nrm)
    rs, rp = fresnel_reflectance(cos_i, 1.0, ior)
    env = scene.environment.radiance(reflect(d, nrm))
    s0 = env * (0.5 * (rs + rp))[None]
    s_lin = env * (0.5 * (rs - rp))[None]

    # Transmission: follow the refracted ray to where it leaves the solid.
    ts, tp = 1.0 - rs, 1.0 - rp
    inner, _ = refract(d, nrm, 1.0 / ior)
    pos = p - _NUDGE * nrm
    live = np.arange(d.shape[1])
    exit_o, exit_d, exit_ts, exit_tp, exit_idx = [], [], [], [], []
    for bounce in range(MAX_INTERNAL_BOUNCES + 1):
        q, n_out, r_s, r_p, out_dir, tir = _next_interface(obj, pos, inner, ior)
        leave = ~tir
        exit_o.append(q[:, leave] + _NUDGE * n_out[:, leave])
        exit_d.append(out_dir[:, leave])
        exit_ts.append(ts[leave] * (1.0 - r_s[leave]))
        exit_tp.append(tp[leave] * (1.0 - r_p[leave]))
        exit_idx.append(live[leave])
        if mat.thin_wall and bounce == 0:  # the partial reflection off the first wall's far side
            s0_back, s_lin_back = _far_side_reflection(scene, obj, q, inner, n_out, ts, tp, r_s * leave,
                                                       r_p * leave, ior)
            s0, s_lin = s0 + s0_back, s_lin + s_lin_back
        if not tir.any():
            break
        # Totally reflected rays bounce on inside the solid (Rs = Rp = 1 there).
        live, pos, inner = live[tir], q[:, tir] - _NUDGE * n_out[:, tir], out_dir[:, tir]
        ts, tp = ts[tir], tp[tir]
    idx = np.concatenate(exit_idx)
    if idx.size:
        origins, directions = np.concatenate(exit_o, axis=1), np.concatenate(exit_d, axis=1)
        t_s, t_p = np.concatenate(exit_ts), np.concatenate(exit_tp)
        if mat.thin_wall:  # light through the far wall keeps its polarization (the same plane of incidence)
            behind, behind_lin = _through_own_wall(scene, obj, origins, directions, depth - 1)
        else:
            behind, behind_lin = radiance(scene, origins, directions, depth - 1), None
        if mat.tint is not None:
            behind = behind * mat.tint[:, None]
            behind_lin = None if behind_lin is None else behind_lin * mat.tint[:, None]
        s0[:, idx] += behind * (0.5 * (t_s + t_p))[None]
        s_lin[:, idx] += behind * (0.5 * (t_s - t_p))[None]
        if behind_lin is not None:  # a diattenuator along s/p: the Mueller matrix's other column
            s0[:, idx] += behind_lin * (0.5 * (t_s - t_p))[None]
            s_lin[:, idx] += behind_lin * (0.5 * (t_s + t_p))[None]
    return s0.astype(np.float32, copy=False), s_lin.astype(np.float32, copy=False)


def _next_interface(obj, pos: np.ndarray, inner: np.ndarray, ior: float) -> tuple[np.ndarray, ...]:
    """Where rays inside ``obj``'s glass at ``pos`` going ``inner`` meet its surface: the
    points ``q``, the outward normals there, the interface's reflectances ``(Rs, Rp)``
    from inside, the refracted directions out and the total-internal-reflection mask
    (where the direction is the mirror one instead)."""
    _, t_out = obj.surface.interval(pos, inner)
    t_out = np.where(np.isfinite(t_out) & (t_out > 0), t_out, 0.0).astype(np.float32)
    q = pos + t_out * inner
    n_out = obj.surface.normal_at(q).astype(np.float32, copy=False)
    r_s, r_p = fresnel_reflectance(dot(inner, n_out), ior, 1.0)
    out_dir, tir = refract(inner, -n_out, ior)
    return q, n_out, r_s, r_p, out_dir, tir


def _far_side_reflection(scene: Scene, obj, q: np.ndarray, inner: np.ndarray, n_out: np.ndarray, ts: np.ndarray,
                         tp: np.ndarray, r_s: np.ndarray, r_p: np.ndarray, ior: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The environment seen by the partial reflection ``r_s``, ``r_p`` at the far side ``q`` of
    the wall the rays entered with transmittances ``ts``, ``tp``: reflected back inside,
    out through the next interface, s and p kept relative to the first hit's plane of
    incidence (exact when the two sides are parallel, as in a pane or a thin wall)."""
    _, _, r_s2, r_p2, out_dir, tir = _next_interface(obj, q - _NUDGE * n_out, reflect(inner, n_out), ior)
    env = scene.environment.radiance(out_dir) * (~tir)[None]
    a_s = ts * r_s * (1.0 - r_s2)
    a_p = tp * r_p * (1.0 - r_p2)
    return env * (0.5 * (a_s + a_p))[None], env * (0.5 * (a_s - a_p))[None]


def _through_own_wall(scene: Scene, obj, o: np.ndarray, d: np.ndarray, depth: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Radiance ``(C, N)`` along rays leaving a thin wall, and its signed linear part where
    they next meet the same object (a vessel's far wall, whose plane of incidence is the
    near wall's for a round vessel), zero elsewhere (other surfaces' planes differ)."""
    t, index = closest_hit(scene, o, d, with_glass=depth > 0)
    s0, s_lin, _ = shade(scene, o, d, t, index, depth)
    own = next(k for k, other in enumerate(scene.objects) if other is obj)
    return s0, np.where((index == own)[None], s_lin, 0.0)


def radiance(scene: Scene, o: np.ndarray, d: np.ndarray, depth: int) -> np.ndarray:
    """``(C, N)`` radiance arriving along secondary rays (their polarization is dropped)."""
    t, index = closest_hit(scene, o, d, with_glass=depth > 0)
    return shade(scene, o, d, t, index, depth)[0]


# ---------------------------------------------------------------------------- Mueller tracing
def shade_stokes(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, index: np.ndarray, depth: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polarized radiance leaving the first hits towards the rays' origins (light travelling along -d).

    Returns ``stokes`` ``(4, C, N)`` (S0-S3, :mod:`~polstereo.data.synthetic.optics`) in the
    reference frames ``frame`` ``(3, N)`` (unit, perpendicular to ``d``: the s-direction of the
    hit where there is one) and ``normals`` ``(3, N)`` facing the rays (zero where no hit). Rays
    that hit nothing see the environment, unpolarized.
    """
    channels = scene.channels
    n_rays = d.shape[1]
    stokes = np.zeros((4, channels, n_rays), dtype=np.float32)
    frame = np.empty((3, n_rays), dtype=np.float32)
    normals = np.zeros((3, n_rays), dtype=np.float32)
    miss = np.flatnonzero(index < 0)
    if miss.size:
        stokes[0][:, miss] = scene.environment.radiance(d[:, miss])
        frame[:, miss] = perpendicular(d[:, miss])
    for obj, sel, ds, p, nrm in _hits_by_object(scene, o, d, t, index):
        s_dir = s_direction(ds, nrm)
        if obj.material.kind == "glass":
            stokes[:, :, sel] = _glass_stokes(scene, obj, p, ds, nrm, s_dir, depth)
        else:
            traced_coat = depth > 0
            s0, s_lin = _shade_opaque(scene, obj, p, ds, nrm, coat=not traced_coat)
            stokes[0][:, sel], stokes[1][:, sel] = s0, s_lin
            mat = obj.material
            if traced_coat and mat.kind == "glossy" and mat.specular > 0:  # the clear coat mirrors the scene
                mirror = reflect(ds, nrm)
                light, light_frame = radiance_stokes(scene, p + _NUDGE * nrm, mirror, 0)
                coat = fresnel_reflection_mueller(-dot(ds, nrm), 1.0, mat.ior)
                stokes[:, :, sel] += mat.specular * _through_interface(light, light_frame, mirror, s_dir, coat)
        frame[:, sel], normals[:, sel] = s_dir, nrm
    return stokes, frame, normals


def radiance_stokes(scene: Scene, o: np.ndarray, d: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Polarized radiance ``(4, C, N)`` arriving along rays (travelling along -d) and its frames ``(3, N)``."""
    t, index = closest_hit(scene, o, d, with_glass=depth > 0)
    return shade_stokes(scene, o, d, t, index, depth)[:2]


def _through_interface(stokes: np.ndarray, frame: np.ndarray, arriving: np.ndarray, s_dir: np.ndarray,
                       mueller: tuple[np.ndarray, ...]) -> np.ndarray:
    """Light ``stokes`` in ``frame`` arriving at an interface against the backward ray ``arriving``
    (it travels along -arriving), reflected or refracted by ``mueller``: Stokes in frame ``s_dir``."""
    return apply_mueller(rotate_stokes(stokes, frame, s_dir, -arriving), mueller)


class _Exits:
    """Rays leaving a piece of glass, collected interface by interface and traced together.

    Each part is a set of rays (origins, directions) whose light is refracted or reflected
    into the glass by an interface (the Mueller matrices ``(a, b, c, e)`` in that interface's
    frames ``s_frame``) and added to ``target[..., index]`` (a ``(4, C, N)`` array; the indices
    of one part are distinct).
    """

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, origins: np.ndarray, directions: np.ndarray, s_frame: np.ndarray, mueller: tuple[np.ndarray, ...],
            target: np.ndarray, index: np.ndarray) -> None:
        if index.size:
            self.parts.append((origins, directions, s_frame, mueller, target, index))

    def __len__(self) -> int:
        return sum(part[5].size for part in self.parts)

    def deliver(self, light: np.ndarray, frame: np.ndarray) -> None:
        """Hand each ray's light ``(4, C, M)`` in ``frame`` (in the order added) to its target."""
        start = 0
        for _, directions, s_frame, mueller, target, index in self.parts:
            stop = start + index.size
            target[..., index] += _through_interface(light[..., start:stop], frame[:, start:stop], directions,
                                                     s_frame, mueller)
            start = stop


def _trace_together(scene: Scene, depth: int, *exit_sets: _Exits) -> list[tuple[np.ndarray, np.ndarray]]:
    """The light ``(4, C, M)`` and frames ``(3, M)`` arriving along the rays of each of ``exit_sets``,
    traced in one go."""
    parts = [part for exits in exit_sets for part in exits.parts]
    if not parts:
        return [(np.zeros((4, scene.channels, 0), np.float32), np.zeros((3, 0), np.float32)) for _ in exit_sets]
    light, frame = radiance_stokes(scene, np.concatenate([part[0] for part in parts], axis=1),
                                   np.concatenate([part[1] for part in parts], axis=1), depth)
    bounds = np.cumsum([0] + [len(exits) for exits in exit_sets])
    return [(light[..., a:b], frame[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _perpendicular_part(frame: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Unit ``frame`` vectors made perpendicular to the directions ``k`` (the frame of a nearly
    parallel ray carried over); where that leaves nothing, any perpendicular."""
    return unit_or_perpendicular(frame - dot(frame, k) * k, k, 1e-3).astype(np.float32, copy=False)


def _glass_stokes(scene: Scene, obj, p: np.ndarray, d: np.ndarray, nrm: np.ndarray, s_dir: np.ndarray,
                  depth: int) -> np.ndarray:
    """Stokes ``(4, C, N)`` in frames ``s_dir`` of the light leaving glass at ``p`` against rays ``d``,
    each interface acting in the frame of its own plane of incidence.

    The Fresnel reflection of the scene (without its glass: depth 0) plus what comes through the
    glass: the backward rays are refracted in and followed inside, breadth first. At each
    interface what is refracted in from outside is traced on into the scene: with ``depth - 1``
    on the main path (refracted in, then only totally reflected), without the scene's glass
    where a partial reflection inside came first (glass seen that way is a second-order effect,
    and tracing it would multiply the cost). What is reflected there inside goes on while it
    can still carry :data:`MIN_INTERNAL_REFLECTANCE` of the pixel (the product of the largest
    of Rs, Rp of the reflections on its way, 1 for total ones), up to
    :data:`MAX_INTERNAL_REFLECTIONS` reflections. The rays leaving the glass are traced
    together (:class:`_Exits`); then the light is carried back, interface by interface: at
    each, what was refracted in plus what was reflected there (rotated from the next
    interface's frame into this one's), until it is refracted out towards the pixel.

    Thin walls (``Material.thin_wall``): the partial reflection off the far side of the first
    wall leaves parallel to the outer reflection (exactly so for parallel sides) a wall's
    thickness away, and is given the light the outer reflection sees instead of a ray of its own.
    """
    ior = obj.material.ior
    n_rays = d.shape[1]
    out = np.zeros((4, scene.channels, n_rays), dtype=np.float32)
    cos_i = -dot(d, nrm)
    outer = _Exits()  # the outer reflection, depth 0
    outer.add(p + _NUDGE * nrm, reflect(d, nrm), s_dir, fresnel_reflection_mueller(cos_i, 1.0, ior), out,
              np.arange(n_rays))
    inside = _follow_inside(obj, p - _NUDGE * nrm, refract(d, nrm, 1.0 / ior)[0], s_dir, depth, scene.channels)
    _light_the_exits(scene, depth, outer, inside)
    through = _carry_back(inside, s_dir, fresnel_transmission_mueller(cos_i, 1.0, ior))
    if obj.material.tint is not None:
        through *= obj.material.tint[None, :, None]
    return out + through


@dataclass
class _InsidePath:
    """The backward rays followed inside a piece of glass from where they were refracted in.

    Interface by interface (``k``): the light leaving it inwards, ``arriving[k]`` ``(4, C, N_k)``
    (zero until delivered) in the frames ``frames[k]`` ``(3, N_k)``, against the backward rays
    ``backward[k]``; of its rays, those that go on to interface ``k + 1`` (``continuing[k]``,
    indices) and the Mueller matrices of their reflection there (``reflections[k]``).
    The rays refracted out, to be traced into the scene: ``behind`` (the main path, refracted in
    and then only totally reflected), ``seen`` (after a partial reflection inside) and
    ``mirrored`` (thin walls: ``(exit arguments, pixels)`` of the partial reflections off the far
    side of the first wall, given what the outer reflection sees).
    """

    arriving: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    backward: list[np.ndarray] = field(default_factory=list)
    reflections: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    continuing: list[np.ndarray] = field(default_factory=list)
    behind: _Exits = field(default_factory=_Exits)  # depth - 1
    seen: _Exits = field(default_factory=_Exits)  # depth 0
    mirrored: list[tuple] = field(default_factory=list)


def _follow_inside(obj, pos: np.ndarray, inner: np.ndarray, s_dir: np.ndarray, depth: int,
                   channels: int) -> _InsidePath:
    """Follow the backward rays ``inner`` ``(3, N)``, refracted into glass ``obj`` at ``pos`` (entry
    frames ``s_dir``), from interface to interface, breadth first, while they can still carry
    :data:`MIN_INTERNAL_REFLECTANCE` of their pixel, up to the material's reflection limit; partial
    reflections are followed on thin walls and while ``depth >= MAX_TRACE_DEPTH - 1`` only."""
    mat, ior = obj.material, obj.material.ior
    path = _InsidePath()
    root = np.arange(inner.shape[1])  # the pixel of each ray
    reach = np.ones(inner.shape[1], dtype=np.float32)  # the most of the pixel a ray can still carry
    # a solid seen through other glass: the main path only (its partial reflections are second order twice over);
    # a thin wall's partial reflection is cheap (it reuses the outer reflection's light) and as strong as that one
    partial_reflections = mat.thin_wall or depth >= MAX_TRACE_DEPTH - 1
    last = MAX_THIN_WALL_REFLECTIONS if mat.thin_wall else MAX_INTERNAL_REFLECTIONS
    for bounce in range(last + 1):
        _, t_out = obj.surface.interval(pos, inner)
        t_out = np.where(np.isfinite(t_out) & (t_out > 0), t_out, 0.0).astype(np.float32)
        q = pos + t_out * inner
        n_out = obj.surface.normal_at(q).astype(np.float32, copy=False)
        s_here = s_direction(inner, n_out, path.frames[-1][:, path.continuing[-1]] if path.frames else s_dir)
        cos_here = dot(inner, n_out)
        light_here = np.zeros((4, channels, inner.shape[1]), dtype=np.float32)
        path.arriving.append(light_here)
        path.frames.append(s_here)
        path.backward.append(inner)
        out_dir, tir = refract(inner, -n_out, ior)
        reflection = fresnel_reflection_mueller(cos_here, ior, 1.0)
        main = reach >= 1.0
        for leave, exits in ((np.flatnonzero(~tir & main), path.behind), (np.flatnonzero(~tir & ~main), path.seen)):
            args = (q[:, leave] + _NUDGE * n_out[:, leave], out_dir[:, leave], s_here[:, leave],
                    transmission_of(reflection[0][leave], reflection[1][leave]), light_here, leave)
            if exits is path.seen and bounce == 1 and mat.thin_wall:
                path.mirrored.append((args, root[leave]))
            else:
                exits.add(*args)
        if bounce == last:
            break
        strongest = reflection[0] + np.abs(reflection[1])  # max(Rs, Rp)
        share = np.where(tir, 1.0, strongest if partial_reflections else 0.0)
        go_on = np.flatnonzero(reach * share >= MIN_INTERNAL_REFLECTANCE)
        if go_on.size == 0:
            break
        path.reflections.append(tuple(m[go_on] for m in reflection))
        path.continuing.append(go_on)
        root, reach = root[go_on], reach[go_on] * share[go_on]
        pos = q[:, go_on] - _NUDGE * n_out[:, go_on]
        inner = reflect(inner[:, go_on], n_out[:, go_on])
    return path


def _light_the_exits(scene: Scene, depth: int, outer: _Exits, inside: _InsidePath) -> None:
    """Trace the rays leaving the glass into the scene and deliver their light: the outer
    reflection's (``outer``) and those after a partial reflection inside without the scene's glass
    (depth 0), the main path's with ``depth - 1``; the thin walls' mirrored partial reflections get
    the light the outer reflection sees, rotated into a frame of their own."""
    if depth - 1 > 0:
        inside.behind.deliver(*_trace_together(scene, depth - 1, inside.behind)[0])
        (light, light_frame), partial = _trace_together(scene, 0, outer, inside.seen)
    else:  # all of it sees the scene without glass: one go
        main_light, (light, light_frame), partial = _trace_together(scene, 0, inside.behind, outer, inside.seen)
        inside.behind.deliver(*main_light)
    outer.deliver(light, light_frame)
    inside.seen.deliver(*partial)
    for (origins, directions, s_frame, mueller, target, index), pixels in inside.mirrored:
        target[..., index] += _through_interface(light[..., pixels],
                                                 _perpendicular_part(light_frame[:, pixels], directions),
                                                 directions, s_frame, mueller)


def _carry_back(inside: _InsidePath, s_dir: np.ndarray, entry: tuple[np.ndarray, ...]) -> np.ndarray:
    """The light ``(4, C, N)`` in frames ``s_dir`` that comes out of the glass towards the pixels: from
    the last interface back to the first, each adds what is reflected there (rotated from the next
    interface's frame into its own) to what was refracted in, and the entry refracts it out
    (Mueller matrices ``entry``)."""
    arriving, frames, backward = inside.arriving, inside.frames, inside.backward
    for k in range(len(arriving) - 1, 0, -1):
        go_on = inside.continuing[k - 1]
        arriving[k - 1][..., go_on] += _through_interface(arriving[k], frames[k], backward[k],
                                                          frames[k - 1][:, go_on], inside.reflections[k - 1])
    return _through_interface(arriving[0], frames[0], backward[0], s_dir, entry)


# ---------------------------------------------------------------------------- views and pairs
def render_view(scene: Scene, view: str, max_depth: int = MAX_TRACE_DEPTH) -> ViewRender:
    """Ray-cast ``"left"`` or ``"right"`` into Stokes images and first-hit depth."""
    rig = scene.rig
    o = rig.origin(view)
    d = rig.ray_directions()
    t, index = closest_hit(scene, o, d)
    h, w = rig.height, rig.width
    if scene.polarization == "mueller":
        stokes4, frame, _ = shade_stokes(scene, o, d, t, index, max_depth - 1)
        stokes = stokes_to_image(stokes4, frame, d).reshape(3, scene.channels, h, w)
    else:
        s0, s_lin, normals = shade(scene, o, d, t, index, max_depth - 1)
        # The s-direction (perpendicular to the plane of incidence) as an image angle.
        cos2, sin2 = image_angle_cos_sin(normalize(cross(d, normals)), d)
        stokes = np.stack([s0, s_lin * cos2[None], s_lin * sin2[None]]).reshape(3, scene.channels, h, w)
    hit = np.isfinite(t)
    points = np.where(hit, o + np.where(hit, t, 0.0) * d, np.inf).astype(np.float32)
    return ViewRender(stokes.astype(np.float32), (t * d[2]).reshape(h, w), index.reshape(h, w), points)


def occluded_from(scene: Scene, points: np.ndarray, view: str) -> np.ndarray:
    """``(N,)`` True where a surface hides ``points`` ``(3, N)`` (finite) from camera ``view``."""
    o = scene.rig.origin(view)
    v = points - o
    dist = np.sqrt(dot(v, v))
    t, _ = closest_hit(scene, o, (v / dist).astype(np.float32))
    return t < dist * (1.0 - _OCCLUSION_TOL)


def render_pair(scene: Scene, max_depth: int = MAX_TRACE_DEPTH) -> PairRender:
    """Both views and the left view's ground truth (first-surface disparity, masks)."""
    rig = scene.rig
    left = render_view(scene, "left", max_depth)
    right = render_view(scene, "right", max_depth)
    h, w = rig.height, rig.width
    hit = np.isfinite(left.depth)
    with np.errstate(divide="ignore"):
        disparity = np.where(hit, rig.focal_px * rig.baseline_m / left.depth, np.nan).astype(np.float32)
    kinds = np.array([MATERIAL_KINDS.index(obj.material.kind) for obj in scene.objects] + [-1], dtype=np.int8)
    kind = kinds[left.object_index]  # index -1 picks the trailing "none"
    occlusion = np.ones(h * w, dtype=bool)
    sel = np.flatnonzero(hit.ravel())
    occlusion[sel] = occluded_from(scene, left.points[:, sel], "right")
    x_right = np.arange(w, dtype=np.float32)[None, :] - disparity
    occlusion = occlusion.reshape(h, w) | (x_right < -0.5)
    return PairRender(left, right, disparity, kind == MATERIAL_KINDS.index("glass"), occlusion, kind)
