"""Glass in polstereo's generator against Mitsuba 3 on the same geometry.

    python scripts/mitsuba_compare.py [--spp 256] [--size 160 120] [--scenes all|shells|solids|panes]
                                      [--model mueller|shared-plane|both] [--bin 2] [--seed 1] [--cache DIR]
                                      [--json OUT.json]

Fourteen scenes, each one piece of glass (n = 1.5) about 4 units in front of the left
camera: shells (a solid sphere, sphere shells with walls 10 / 5 / 2 % of the radius, an
inner sphere of air: nested dielectrics in Mitsuba, ``geometry.Hollow`` in the generator;
an off-axis shell), solids with non-parallel faces (boxes at three orientations, triangular
prisms at two; a Wavefront mesh in Mitsuba), slabs 15 % as thick as they are wide (at
Brewster's angle to the view, tilted 71° to it) and panes (3 % thick, turned 0.5 rad about the
vertical and 0.2 about the horizontal; 2 % thick, pitched to Brewster's angle). Behind the
glass a uniformly bright, unpolarized wall (a Mitsuba area emitter of radiance 1, large
enough to stand for the generator's infinite plane; the generator's grey diffuse wall
shaded to the same 1, its diffuse polarization off), around it a dim uniform sky (0.3).
Both render the left view's Stokes images (Mitsuba's ``stokes`` integrator over a full path
tracer, ``scalar_spectral_polarized``, re-expressed in polstereo's image convention by
:func:`polstereo.data.converters.mitsuba.mitsuba_stokes_to_image`) and its first-surface
depth (Mitsuba's ``depth`` AOV at one sample per pixel). ``--model`` picks the generator's
polarization model (``SyntheticConfig.polarization``; ``both``: a row each). Over the glass,
the table gives:

- ``S0``: means in Mitsuba and in the generator (spheres: inside 0.65 of the silhouette
  radius, the rows before reflections were traced into the scene compared only there;
  the other shapes: all of the glass);
- ``DoLP``: the same means, over ``--bin`` x ``--bin`` blocks of pixels (the Stokes images
  averaged per block first, which averages Mitsuba's Monte Carlo noise down: per pixel, noise
  alone raises a small DoLP);
- ``AoLP``: the mean absolute difference (degrees, modulo 180) over blocks where both DoLP > 0.02;
- ``disparity``: mean and largest absolute difference of the first-surface disparity
  (baseline 0.2) over pixels that are glass in both, and the silhouettes' IoU.

``--cache DIR`` keeps Mitsuba's renders (the slow part) for reruns against a changed generator.
Needs the ``mitsuba`` package (``pip install mitsuba``, in ``.[test]``). A research
diagnostic for docs/synthetic.md and docs/notebook/2026-12-03-generator-against-mitsuba.md; tests/data/synthetic/test_render.py
and test_mueller.py keep small versions of the shell and box comparisons.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polstereo.data.converters.mitsuba import mitsuba_stokes_to_image, range_to_z
from polstereo.data.synthetic.geometry import FACING, Convex, Hollow, Plane, rotation_about, yaw_pitch
from polstereo.data.synthetic.render import render_view
from polstereo.data.synthetic.scene import Environment, Material, Scene, SceneObject, StereoRig
from polstereo.polar.stokes import aolp, dolp

from mitsuba_evidence import FOV_DEG, load_mitsuba  # scripts/ is on the path when a script runs
CAMERA_Z = 4.0   # Mitsuba: the camera at z = 4 looks down -z; the generator: camera at 0 looking down +z
WALL_Z = -3.0    # Mitsuba's wall plane, 7 units from the camera
SKY, WALL = 0.3, 1.0
WALL_HALF_SIZE = 1e4  # Mitsuba's wall rectangle: as good as the generator's infinite plane, even for grazing exits
IOR = 1.5
BASELINE = 0.2
FLIP = np.diag([1.0, -1.0, -1.0])  # generator frame (x right, y down, z forward) to Mitsuba's (y up, z back)


@dataclass(frozen=True)
class Glass:
    """One piece of glass in the generator's camera frame: a sphere (shell when ``wall`` > 0,
    walls ``wall`` x the radius thick), or a ``shape`` "box" or "prism" (``size``: the unit
    shape's scale, half-extents for a box; ``rotation``)."""

    name: str
    center: tuple[float, float, float]
    radius: float = 0.0
    wall: float = 0.0
    size: tuple[float, float, float] | None = None
    rotation: np.ndarray | None = None
    shape: str = "box"


BREWSTER = float(np.arctan(IOR))

SHELL_SCENES = (
    Glass("solid sphere", (0.0, 0.0, 4.0), radius=1.0),
    Glass("shell, wall 10 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.10),
    Glass("shell, wall 5 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.05),
    Glass("shell, wall 2 %", (0.0, 0.0, 4.0), radius=1.0, wall=0.02),
    Glass("shell 5 %, off-axis", (0.7, -0.4, 4.5), radius=0.7, wall=0.05),
)
SOLID_SCENES = (
    Glass("solid box", (0.0, 0.0, 4.0), size=(0.5, 0.6, 0.4), rotation=yaw_pitch(0.5, 0.2)),
    Glass("solid box, turned", (0.0, 0.0, 4.0), size=(0.6, 0.45, 0.5), rotation=rotation_about((1.0, 2.0, 0.5), 2.2)),
    Glass("solid box, corner on", (0.2, -0.1, 4.2), size=(0.5, 0.5, 0.5),
          rotation=rotation_about((1.0, -1.0, 0.3), 0.9)),
    Glass("prism", (0.0, 0.0, 4.0), size=(0.8, 0.8, 0.9), rotation=yaw_pitch(0.3, 0.4)),
    Glass("prism, lying", (0.0, 0.1, 4.2), size=(0.7, 0.7, 1.1), rotation=rotation_about((1.0, 0.3, -0.2), 1.5)),
    Glass("slab 15 %, at Brewster", (0.0, 0.0, 4.0), size=(0.12, 0.8, 0.8),
          rotation=yaw_pitch(BREWSTER, 0.0) @ FACING),
    Glass("slab 15 %, tilted 71°", (0.0, 0.0, 4.0), size=(0.12, 0.9, 0.9),
          rotation=yaw_pitch(0.3, np.radians(70.0)) @ FACING),
)
PANE_SCENES = (
    Glass("pane, 3 % thick", (0.0, 0.0, 4.0), size=(0.03, 0.9, 0.9), rotation=yaw_pitch(0.5, 0.2) @ FACING),
    Glass("pane at Brewster, pitched", (0.0, 0.0, 4.0), size=(0.02, 0.9, 0.9),
          rotation=yaw_pitch(0.0, BREWSTER) @ FACING),
)
SCENES = SHELL_SCENES + SOLID_SCENES + PANE_SCENES
SCENE_GROUPS = {"all": SCENES, "shells": SHELL_SCENES, "solids": SOLID_SCENES, "panes": PANE_SCENES}
PRISM_VERTICES = np.array([[np.cos(a), np.sin(a), z] for z in (-1.0, 1.0)
                           for a in np.radians([90.0, 210.0, 330.0])])  # the generator's unit prism
PRISM_FACES = ((0, 1, 2), (3, 4, 5), (0, 1, 4), (0, 4, 3), (1, 2, 5), (1, 5, 4), (2, 0, 3), (2, 3, 5))


def prism_obj(path) -> str:
    """Write the unit prism as a Wavefront OBJ (faces wound so their normals point out); its path."""
    lines = [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in PRISM_VERTICES]
    for a, b, c in PRISM_FACES:
        va, vb, vc = PRISM_VERTICES[[a, b, c]]
        outward = np.cross(vb - va, vc - va) @ (va + vb + vc) > 0  # the centroid of the prism is the origin
        lines.append(f"f {a + 1} {b + 1} {c + 1}" if outward else f"f {a + 1} {c + 1} {b + 1}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


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
        if glass.shape == "prism":
            scene["glass"] = {"type": "obj", "filename": prism_obj(_scratch() / "prism.obj"), "face_normals": True,
                              "to_world": T(matrix.tolist()), "bsdf": dielectric}
        else:
            scene["glass"] = {"type": "cube", "to_world": T(matrix.tolist()), "bsdf": dielectric}
    if with_surroundings:
        scene["wall"] = {"type": "rectangle", "to_world": T().translate([0, 0, WALL_Z]).scale(WALL_HALF_SIZE),
                         "emitter": {"type": "area", "radiance": {"type": "rgb", "value": WALL}}}
        scene["sky"] = {"type": "constant", "radiance": {"type": "rgb", "value": SKY}}
    return scene


_SCRATCH = []


def _scratch():
    """A temporary folder for mesh files, removed at exit."""
    import atexit
    import shutil
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="mitsuba_compare_")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def render_mitsuba(mi, glass: Glass, width: int, height: int, spp: int, seed: int = 1
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mitsuba's ``(3, H, W)`` Stokes S0-S2 (mean over wavelengths, in the image convention),
    first-surface z depth (``inf`` for none) and glass silhouette."""
    stokes_integrator = {"type": "stokes", "integrator": {"type": "path", "max_depth": 12}}
    scene = mi.load_dict(mitsuba_scene(mi, glass, width, height, stokes_integrator, spp))
    mi.render(scene, seed=seed)
    channels = dict(scene.sensors()[0].film().bitmap(raw=False).split())
    stokes = np.stack([np.array(channels[name]).mean(axis=-1) for name in ("S0", "S1", "S2")])
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    stokes[1], stokes[2] = mitsuba_stokes_to_image(stokes[1], stokes[2], focal)
    depth_integrator = {"type": "aov", "aovs": "depth:depth"}
    scene = mi.load_dict(mitsuba_scene(mi, glass, width, height, depth_integrator, 1, with_surroundings=False))
    mi.render(scene, seed=0)
    distance = np.array(dict(scene.sensors()[0].film().bitmap(raw=False).split())["depth"])
    silhouette = distance > 0
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    z = np.where(silhouette, range_to_z(np.where(silhouette, distance, 1.0), focal), np.inf)
    return stokes, z, silhouette


def cached_render(cache: Path | None, mi, glass: Glass, width: int, height: int, spp: int,
                  seed: int = 1) -> tuple[np.ndarray, ...]:
    """:func:`render_mitsuba`, kept in (and read back from) the folder ``cache`` when given."""
    if cache is None:
        return render_mitsuba(mi, glass, width, height, spp, seed)
    key = re.sub(r"[^a-z0-9]+", "_", glass.name.lower()).strip("_")
    path = cache / f"{key}_{width}x{height}_{spp}spp{'' if seed == 1 else f'_seed{seed}'}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["stokes"], stored["depth"], stored["silhouette"]
    stokes, depth, silhouette = render_mitsuba(mi, glass, width, height, spp, seed)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, stokes=stokes, depth=depth, silhouette=silhouette)
    return stokes, depth, silhouette


def render_generator(glass: Glass, width: int, height: int, polarization: str = "mueller"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generator's Stokes, first-surface z depth and glass silhouette of the same scene
    (``polarization``: the generator's model, ``Scene.polarization``)."""
    rig = StereoRig(width, height, (width / 2) / np.tan(np.radians(FOV_DEG) / 2), BASELINE)
    center = np.asarray(glass.center, dtype=np.float64)
    if glass.size is None:
        solid = Convex("ellipsoid", center, np.eye(3), np.full(3, glass.radius))
        surface = solid if glass.wall == 0 else Hollow(
            solid, (Convex("ellipsoid", center, np.eye(3), np.full(3, glass.radius * (1.0 - glass.wall))),))
    else:
        surface = Convex(glass.shape, center, glass.rotation, np.asarray(glass.size, dtype=np.float64))
    material = Material("glass", ior=IOR, thin_wall=glass.wall > 0 or glass.size is not None)
    # an unpolarized wall, as Mitsuba's emitter (the generator's diffuse walls are weakly polarized)
    wall = SceneObject(Plane.through([0.0, 0.0, CAMERA_Z - WALL_Z], [0.0, 0.0, -1.0]),
                       Material("diffuse", depolarization=0.0), "wall")
    sky = Environment(surround=np.zeros(1, np.float32), sky=np.array([SKY], np.float32), sky_elevation=-2.0)
    # the grey wall (albedo 0.5) lit by ambient 2.5 shades to the Mitsuba wall's radiance 1
    scene = Scene(rig, (wall, SceneObject(surface, material, glass.name)), sky,
                  np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), np.array([2.5], np.float32),
                  polarization=polarization)
    view = render_view(scene, "left")
    return view.stokes[:, 0], view.depth, view.object_index == 1


def binned(stokes: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(3, H/size, W/size)`` Stokes averaged over ``size`` x ``size`` blocks and the blocks that lie
    wholly inside ``mask``: Mitsuba's Monte Carlo noise averaged down, the generator's render alike."""
    height, width = (n // size * size for n in mask.shape)
    blocks = stokes[:, :height, :width].reshape(3, height // size, size, width // size, size).mean(axis=(2, 4))
    inside = mask[:height, :width].reshape(height // size, size, width // size, size).all(axis=(1, 3))
    return blocks, inside


def compare(glass: Glass, mitsuba: tuple, ours: tuple, focal: float, bin_size: int = 1) -> dict:
    """The table's row for one scene (DoLP and AoLP over ``bin_size`` x ``bin_size`` blocks)."""
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
    b_ref, inside = binned(s_ref, core, bin_size)
    b_ours, _ = binned(s_ours, core, bin_size)
    polarized = inside & (dolp(b_ref) > 0.02) & (dolp(b_ours) > 0.02)
    difference = np.abs(np.degrees(aolp(b_ref) - aolp(b_ours)))[polarized] % 180.0
    return {
        "scene": glass.name, "pixels": int(core.sum()),
        "s0": [float(s_ref[0][core].mean()), float(s_ours[0][core].mean())],
        "dolp": [float(dolp(b_ref)[inside].mean()), float(dolp(b_ours)[inside].mean())],
        "aolp_deg": float(np.minimum(difference, 180.0 - difference).mean()) if polarized.any() else None,
        "aolp_pixels": int(polarized.sum()) * bin_size ** 2,
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
    parser.add_argument("--scenes", choices=sorted(SCENE_GROUPS), default="all", help="which rows to render")
    parser.add_argument("--model", choices=("mueller", "shared-plane", "both"), default="mueller",
                        help="the generator's polarization model (SyntheticConfig.polarization); both: a row each")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the rows as JSON")
    parser.add_argument("--bin", type=int, default=2, metavar="N",
                        help="DoLP and AoLP over N x N pixel blocks (Mitsuba's noise averaged down; 1: per pixel)")
    parser.add_argument("--seed", type=int, default=1, help="Mitsuba's sampler seed (another: its noise alone)")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="keep Mitsuba's renders here and reuse them (per scene, size and spp)")
    args = parser.parse_args()
    mi = load_mitsuba()
    if mi is None:
        return 1
    width, height = args.size
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    models = ("mueller", "shared-plane") if args.model == "both" else (args.model,)
    rows = []
    for glass in SCENE_GROUPS[args.scenes]:
        reference = cached_render(args.cache, mi, glass, width, height, args.spp, args.seed)
        for model in models:
            row = compare(glass, reference, render_generator(glass, width, height, model), focal, args.bin)
            rows.append(dict(row, model=model, scene=row["scene"] if len(models) == 1 else f"{row['scene']} ({model})"))
        print(f"{glass.name}: done", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        json.dump(rows, args.json, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
