"""Thin-walled glass in polstereo's generator against Mitsuba 3 on the same geometry.

    python scripts/mitsuba_compare.py [--spp 256] [--size 160 120] [--json OUT.json]

Seven scenes, each one piece of glass (n = 1.5) 4 units in front of the left camera: a
solid sphere, sphere shells with walls 10 / 5 / 2 % of the radius (an inner sphere of
air: nested dielectrics in Mitsuba, ``geometry.Hollow`` in the generator), an off-axis
shell, a solid box and a pane 3 % as thick as it is wide, both turned 0.5 rad about the
vertical and 0.2 rad about the horizontal. Behind the glass a uniformly bright wall (a Mitsuba area emitter of
radiance 1; the generator's grey diffuse wall shaded to the same 1), around it a dim
uniform sky (0.3). Both render the left view's Stokes images (Mitsuba's ``stokes``
integrator over a full path tracer, ``scalar_spectral_polarized``) and its first-surface
depth (Mitsuba's ``depth`` AOV at one sample per pixel). Over the glass, the table gives:

- ``S0``, ``DoLP``: means in Mitsuba and in the generator where the glass reflects the sky
  in both (spheres: inside 0.65 of the silhouette radius, the box and the pane: all of it; the
  generator's glass reflects the environment, not the wall, so sphere rims are left out);
- ``AoLP``: the mean absolute difference (degrees, modulo 180) where both DoLP > 0.02;
- ``disparity``: mean and largest absolute difference of the first-surface disparity
  (baseline 0.2) over pixels that are glass in both, and the silhouettes' IoU.

Needs the ``mitsuba`` package (``pip install mitsuba``, in ``.[test]``). A research
diagnostic for docs/synthetic.md and docs/results.md; tests/data/synthetic/test_render.py
keeps a small version of the shell comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from polstereo.data.converters.mitsuba import range_to_z
from polstereo.data.synthetic.geometry import Convex, Hollow, Plane
from polstereo.data.synthetic.render import render_view
from polstereo.data.synthetic.scene import Environment, Material, Scene, SceneObject, StereoRig
from polstereo.polar.stokes import aolp, dolp

from mitsuba_evidence import FOV_DEG, load_mitsuba  # scripts/ is on the path when a script runs
CAMERA_Z = 4.0   # Mitsuba: the camera at z = 4 looks down -z; the generator: camera at 0 looking down +z
WALL_Z = -3.0    # Mitsuba's wall plane, 7 units from the camera
SKY, WALL = 0.3, 1.0
IOR = 1.5
BASELINE = 0.2
FLIP = np.diag([1.0, -1.0, -1.0])  # generator frame (x right, y down, z forward) to Mitsuba's (y up, z back)


@dataclass(frozen=True)
class Glass:
    """One piece of glass in the generator's camera frame: a sphere (shell when ``wall`` > 0,
    walls ``wall`` x the radius thick) or a box (``size``: half-extents, ``rotation``)."""

    name: str
    center: tuple[float, float, float]
    radius: float = 0.0
    wall: float = 0.0
    size: tuple[float, float, float] | None = None
    rotation: np.ndarray | None = None


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return about_y @ about_x


SCENES = (
    Glass("solid sphere", (0.0, 0.0, 4.0), radius=1.0),
    Glass("shell, wall 10 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.10),
    Glass("shell, wall 5 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.05),
    Glass("shell, wall 2 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.02),
    Glass("shell 5 %, off-axis", (0.7, -0.4, 4.5), radius=0.7, wall=0.05),
    Glass("solid box", (0.0, 0.0, 4.0), size=(0.5, 0.6, 0.4), rotation=_yaw_pitch(0.5, 0.2)),
    # local x, the thin axis, faces the camera (as make-synthetic's panes)
    Glass("pane, 3 % thick", (0.0, 0.0, 4.0), size=(0.03, 0.9, 0.9),
          rotation=_yaw_pitch(0.5, 0.2) @ np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])),
)


def mitsuba_scene(mi, glass: Glass, width: int, height: int, integrator: dict, spp: int,
                  with_surroundings: bool = True) -> dict:
    """The scene as a Mitsuba dict: the left camera at the origin of the generator's frame."""
    T = mi.ScalarTransform4f
    scene = {
        "type": "scene", "integrator": integrator,
        "sensor": {"type": "perspective", "fov": FOV_DEG,
                   "to_world": T().look_at(origin=[0, 0, CAMERA_Z], target=[0, 0, 0], up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": width, "height": height, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": spp}},
    }
    center = (FLIP @ np.asarray(glass.center) + [0.0, 0.0, CAMERA_Z]).tolist()
    dielectric = {"type": "dielectric", "int_ior": IOR, "ext_ior": 1.0}
    if glass.size is None:
        scene["glass"] = {"type": "sphere", "center": center, "radius": glass.radius, "bsdf": dielectric}
        if glass.wall > 0:
            scene["cavity"] = {"type": "sphere", "center": center, "radius": glass.radius * (1.0 - glass.wall),
                               "bsdf": {"type": "dielectric", "int_ior": 1.0, "ext_ior": IOR}}
    else:
        matrix = np.eye(4)
        matrix[:3, :3] = FLIP @ glass.rotation @ np.diag(glass.size)
        matrix[:3, 3] = center
        scene["glass"] = {"type": "cube", "to_world": T(matrix.tolist()), "bsdf": dielectric}
    if with_surroundings:
        scene["wall"] = {"type": "rectangle", "to_world": T().translate([0, 0, WALL_Z]).scale(20),
                         "emitter": {"type": "area", "radiance": {"type": "rgb", "value": WALL}}}
        scene["sky"] = {"type": "constant", "radiance": {"type": "rgb", "value": SKY}}
    return scene


def render_mitsuba(mi, glass: Glass, width: int, height: int, spp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mitsuba's ``(3, H, W)`` Stokes S0-S2 (mean over wavelengths), first-surface z depth
    (``inf`` for none) and glass silhouette."""
    stokes_integrator = {"type": "stokes", "integrator": {"type": "path", "max_depth": 12}}
    scene = mi.load_dict(mitsuba_scene(mi, glass, width, height, stokes_integrator, spp))
    mi.render(scene, seed=1)
    channels = dict(scene.sensors()[0].film().bitmap(raw=False).split())
    stokes = np.stack([np.array(channels[name]).mean(axis=-1) for name in ("S0", "S1", "S2")])
    depth_integrator = {"type": "aov", "aovs": "depth:depth"}
    scene = mi.load_dict(mitsuba_scene(mi, glass, width, height, depth_integrator, 1, with_surroundings=False))
    mi.render(scene, seed=0)
    distance = np.array(dict(scene.sensors()[0].film().bitmap(raw=False).split())["depth"])
    silhouette = distance > 0
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    z = np.where(silhouette, range_to_z(np.where(silhouette, distance, 1.0), focal), np.inf)
    return stokes, z, silhouette


def render_generator(glass: Glass, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generator's Stokes, first-surface z depth and glass silhouette of the same scene."""
    rig = StereoRig(width, height, (width / 2) / np.tan(np.radians(FOV_DEG) / 2), BASELINE)
    center = np.asarray(glass.center, dtype=np.float64)
    if glass.size is None:
        solid = Convex("ellipsoid", center, np.eye(3), np.full(3, glass.radius))
        surface = solid if glass.wall == 0 else Hollow(
            solid, (Convex("ellipsoid", center, np.eye(3), np.full(3, glass.radius * (1.0 - glass.wall))),))
    else:
        surface = Convex("box", center, glass.rotation, np.asarray(glass.size, dtype=np.float64))
    material = Material("glass", ior=IOR, thin_wall=glass.wall > 0 or glass.size is not None)
    wall = SceneObject(Plane.through([0.0, 0.0, CAMERA_Z - WALL_Z], [0.0, 0.0, -1.0]), Material("diffuse"), "wall")
    sky = Environment(surround=np.zeros(1, np.float32), sky=np.array([SKY], np.float32), sky_elevation=-2.0)
    # the grey wall (albedo 0.5) lit by ambient 2.5 shades to the Mitsuba wall's radiance 1
    scene = Scene(rig, (wall, SceneObject(surface, material, glass.name)), sky,
                  np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), np.array([2.5], np.float32))
    view = render_view(scene, "left")
    return view.stokes[:, 0], view.depth, view.object_index == 1


def compare(glass: Glass, mitsuba: tuple, ours: tuple, focal: float) -> dict:
    """The table's row for one scene."""
    (s_ref, z_ref, glass_ref), (s_ours, z_ours, glass_ours) = mitsuba, ours
    both = glass_ref & glass_ours
    height, width = both.shape
    if glass.size is None:  # where the spheres' reflections see the sky in both renderers
        y, x = np.mgrid[0:height, 0:width]
        cx, cy = (width - 1) / 2 + focal * glass.center[0] / glass.center[2], \
            (height - 1) / 2 + focal * glass.center[1] / glass.center[2]
        silhouette_px = focal * glass.radius / np.sqrt(glass.center[2] ** 2 - glass.radius ** 2)
        core = both & (np.hypot(x - cx, y - cy) < 0.65 * silhouette_px)
    else:
        core = both
    d_ref, d_ours = focal * BASELINE / z_ref, focal * BASELINE / z_ours
    polarized = core & (dolp(s_ref) > 0.02) & (dolp(s_ours) > 0.02)
    difference = np.abs(np.degrees(aolp(s_ref) - aolp(s_ours)))[polarized] % 180.0
    return {
        "scene": glass.name, "pixels": int(core.sum()),
        "s0": [float(s_ref[0][core].mean()), float(s_ours[0][core].mean())],
        "dolp": [float(dolp(s_ref)[core].mean()), float(dolp(s_ours)[core].mean())],
        "aolp_deg": float(np.minimum(difference, 180.0 - difference).mean()) if polarized.any() else None,
        "aolp_pixels": int(polarized.sum()),
        "disparity": [float(np.abs(d_ref - d_ours)[both].mean()), float(np.abs(d_ref - d_ours)[both].max())],
        "iou": float(both.sum() / (glass_ref | glass_ours).sum()),
    }


def table(rows: list[dict]) -> str:
    lines = ["| scene | pixels | S0 Mitsuba / ours | DoLP Mitsuba / ours | AoLP Δ (deg, px) "
             "| disparity Δ mean / max (px) | silhouette IoU |", "|---|---:|---|---|---|---|---:|"]
    for r in rows:
        aolp_text = "–" if r["aolp_deg"] is None else f"{r['aolp_deg']:.1f} ({r['aolp_pixels']})"
        lines.append(f"| {r['scene']} | {r['pixels']} | {r['s0'][0]:.3f} / {r['s0'][1]:.3f} "
                     f"| {r['dolp'][0]:.4f} / {r['dolp'][1]:.4f} | {aolp_text} "
                     f"| {r['disparity'][0]:.3f} / {r['disparity'][1]:.3f} | {r['iou']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spp", type=int, default=256)
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"))
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the rows as JSON")
    args = parser.parse_args()
    mi = load_mitsuba()
    if mi is None:
        return 1
    width, height = args.size
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    rows = []
    for glass in SCENES:
        rows.append(compare(glass, render_mitsuba(mi, glass, width, height, args.spp),
                            render_generator(glass, width, height), focal))
        print(f"{glass.name}: done", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        json.dump(rows, args.json, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
