"""Vectorised ray casting of a polarized stereo pair and its ground truth.

Each view is rendered on its own (no warping), so occlusions and view-dependent
effects (specular reflections, refraction) are real. Per pixel the camera ray's
first hit is shaded into linear Stokes parameters (S0, S1, S2):

- opaque surfaces: Lambertian S0 from distant lights and an ambient term (no
  shadows), weakly polarized parallel to the plane of emission (diffuse Fresnel
  transmission); glossy ones add a Fresnel mirror reflection of the environment,
  polarized perpendicular to the plane of incidence.
- glass: Fresnel reflection of the structured environment (s-polarized, degree
  (Rs - Rp)/(Rs + Rp)) plus the background seen through the solid: the ray is
  refracted in, followed to the exit (total internal reflection bounces included),
  refracted out and traced on into the scene; the transmitted light carries the
  product of the interfaces' Ts, Tp and so is p-polarized, degree (Tp - Ts)/(Ts + Tp).
- thin-walled glass (vessels, panes; ``Material.thin_wall``): the same, wall by wall
  (outer surface, inner surface, cavity, far wall), plus the partial reflection off
  the far side of the first wall (a thin wall reflects about twice what one surface
  does), and the light coming through the far wall keeps its polarization.

Light reaching a surface is otherwise treated as unpolarized and all parts of a pixel share
the first hit's plane of incidence (exact for spheres, whose refracted paths stay in
that plane; an approximation for other solids). The plane's perpendicular is
projected into the image to give the angle of polarization, measured from
image-horizontal counter-clockwise on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polstereo.data.synthetic.geometry import Plane, bounding_candidates
from polstereo.data.synthetic.optics import (cross, diffuse_dolp, dot, fresnel_reflectance, image_angle_cos_sin,
                                             normalize, reflect, refract)
from polstereo.data.synthetic.scene import MATERIAL_KINDS, Scene

MAX_TRACE_DEPTH = 3        # camera ray + two pieces of glass (two solids, or a vessel's near and far walls)
MAX_INTERNAL_BOUNCES = 3   # total internal reflections followed inside one solid
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
    for k, obj in enumerate(scene.objects):
        sel = np.flatnonzero(index == k)
        if sel.size == 0:
            continue
        ds = d[:, sel]
        p = _take(o, sel) + t[sel] * ds
        nrm = obj.surface.normal_at(p).astype(np.float32, copy=False)
        facing = dot(nrm, ds) > 0  # the side the ray arrives on
        nrm = np.where(facing, -nrm, nrm)
        if obj.material.kind == "glass":
            a, b = _shade_glass(scene, obj, p, ds, nrm, depth)
        else:
            a, b = _shade_opaque(scene, obj, p, ds, nrm)
        s0[:, sel], s_lin[:, sel], normals[:, sel] = a, b, nrm
    return s0, s_lin, normals


def _shade_opaque(scene: Scene, obj, p: np.ndarray, d: np.ndarray, nrm: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
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
    if mat.kind == "glossy" and mat.specular > 0:
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


# ---------------------------------------------------------------------------- views and pairs
def render_view(scene: Scene, view: str, max_depth: int = MAX_TRACE_DEPTH) -> ViewRender:
    """Ray-cast ``"left"`` or ``"right"`` into Stokes images and first-hit depth."""
    rig = scene.rig
    o = rig.origin(view)
    d = rig.ray_directions()
    t, index = closest_hit(scene, o, d)
    s0, s_lin, normals = shade(scene, o, d, t, index, max_depth - 1)
    # The s-direction (perpendicular to the plane of incidence) as an image angle.
    cos2, sin2 = image_angle_cos_sin(normalize(cross(d, normals)), d)
    h, w = rig.height, rig.width
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
