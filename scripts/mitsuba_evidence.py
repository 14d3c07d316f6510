"""Polarization evidence of glass rendered by Mitsuba 3's polarized path tracer.

    python scripts/mitsuba_evidence.py OUT_DIR [--scenes 4] [--spp 256] [--size 160 120] [--thin 0.05]

Independent of polstereo's own generator: renders glass spheres in front of a textured
(checkerboard) wall, lit by a constant sky and bright area lamps, from the two cameras
of a rectified rig (Mitsuba's ``stokes`` integrator, ``scalar_spectral_polarized``),
writes them in the ``mitsuba`` layout (Stokes EXR per view, a 1-spp range-depth render for
the ground truth, the spheres' silhouette as the transparency mask), converts them with
``polstereo convert-dataset --layout mitsuba`` and prints ``polstereo inspect --evidence``:
do the polarization features pin the true (first-surface) disparity of the glass?
With ``--thin F`` each sphere is a thin glass shell instead, walls F x its radius thick (an
inner sphere of air: nested dielectrics); the data set then serves ``polstereo eval`` as
a thin-walled test set the models never trained on.

Needs the ``mitsuba`` package (``pip install mitsuba``). A research diagnostic for
docs/notebook/2026-11-23-polarization-evidence.md, not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from polstereo.io.images import read_exr, write_image

VARIANT = "scalar_spectral_polarized"  # the llvm_* variants crash on these machines
FOV_DEG = 40.0
DEFAULT_BASELINE_M = 0.2


def scene_dict(mi, camera_x: float, params: dict, width: int, height: int, integrator: dict, spp: int,
               glass_only: bool = False) -> dict:
    T = mi.ScalarTransform4f
    scene = {
        "type": "scene",
        "integrator": integrator,
        "sensor": {"type": "perspective", "fov": FOV_DEG,
                   "to_world": T().look_at(origin=[camera_x, 0, 4], target=[camera_x, 0, 0], up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": width, "height": height, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": spp}},
    }
    for i, (center, radius) in enumerate(params["spheres"]):
        scene[f"glass{i}"] = {"type": "sphere", "center": center, "radius": radius,
                              "bsdf": {"type": "dielectric", "int_ior": params["ior"]}}
        if params.get("wall", 0) > 0:  # a cavity of air inside the glass
            scene[f"cavity{i}"] = {"type": "sphere", "center": center, "radius": radius * (1 - params["wall"]),
                                   "bsdf": {"type": "dielectric", "int_ior": 1.0, "ext_ior": params["ior"]}}
    if glass_only:
        return scene
    checker = {"type": "checkerboard", "color0": {"type": "rgb", "value": 0.08},
               "color1": {"type": "rgb", "value": 0.8}, "to_uv": T().scale([params["checks"], params["checks"], 1])}
    scene["wall"] = {"type": "rectangle", "to_world": T().translate([0, 0, params["wall_z"]]).scale(7),
                     "bsdf": {"type": "diffuse", "reflectance": checker}}
    scene["sky"] = {"type": "constant", "radiance": {"type": "rgb", "value": params["sky"]}}
    for i, (position, radiance) in enumerate(params["lamps"]):
        scene[f"lamp{i}"] = {"type": "rectangle",
                             "to_world": T().translate(position).rotate([1, 0, 0], 90).scale(1.2),
                             "emitter": {"type": "area", "radiance": {"type": "rgb", "value": radiance}}}
    return scene


def random_params(rng: np.random.Generator) -> dict:
    spheres = [([float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.5, 0.5))],
                float(rng.uniform(0.5, 0.9)))]
    if rng.random() < 0.5:
        spheres.append(([float(rng.choice([-1.4, 1.4])), float(rng.uniform(-0.6, 0.6)), -0.8],
                        float(rng.uniform(0.3, 0.5))))
    lamps = [([float(rng.uniform(-3, 3)), float(rng.uniform(2.0, 3.5)), float(rng.uniform(0.5, 3.0))],
              float(rng.uniform(5, 12))) for _ in range(int(rng.integers(1, 3)))]
    return {"spheres": spheres, "ior": float(rng.uniform(1.45, 1.55)), "checks": float(rng.uniform(8, 20)),
            "wall_z": float(rng.uniform(-3.0, -2.0)), "sky": float(rng.uniform(0.2, 0.5)), "lamps": lamps}


def render_sample(mi, sample_dir: Path, params: dict, width: int, height: int, spp: int, baseline: float) -> None:
    sample_dir.mkdir(parents=True, exist_ok=True)
    stokes = {"type": "stokes", "integrator": {"type": "path", "max_depth": 8}}
    depth = {"type": "aov", "aovs": "depth:depth", "integrator": {"type": "path", "max_depth": 1}}
    for view, x in (("left", -baseline / 2), ("right", baseline / 2)):
        scene = mi.load_dict(scene_dict(mi, x, params, width, height, stokes, spp))
        mi.render(scene, seed=7)
        scene.sensors()[0].film().bitmap(raw=False).write(str(sample_dir / f"{view}.exr"))
    # ground truth at 1 spp: averaging hits and misses at silhouettes would invent depths
    for name, glass_only in (("depth.exr", False), ("glass_depth.exr", True)):
        scene = mi.load_dict(scene_dict(mi, -baseline / 2, params, width, height, depth, 1, glass_only))
        mi.render(scene, seed=0)
        scene.sensors()[0].film().bitmap(raw=False).write(str(sample_dir / name))
    glass = read_exr(sample_dir / "glass_depth.exr")["depth.T"] > 0
    write_image(sample_dir / "mask.png", glass.astype(np.uint8) * 255)
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    (sample_dir / "meta.json").write_text(json.dumps({"focal_px": float(focal), "baseline_m": baseline}))
    (sample_dir / "glass_depth.exr").unlink()


def load_mitsuba():
    """Mitsuba 3 set to the polarized variant, or None after a one-line error when it is missing."""
    try:
        import mitsuba as mi
    except ImportError:
        print("Error: this diagnostic needs Mitsuba 3: pip install mitsuba", file=sys.stderr)
        return None
    mi.set_variant(VARIANT)
    return mi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--spp", type=int, default=256)
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thin", type=float, default=0.0, metavar="F",
                        help="render thin glass shells, walls F x the radius thick (0: solid spheres)")
    parser.add_argument("--baseline", type=float, default=DEFAULT_BASELINE_M,
                        help="stereo baseline in scene units; the cameras are 4 units from the glass")
    args = parser.parse_args()
    mi = load_mitsuba()
    if mi is None:
        return 1
    rng = np.random.default_rng(args.seed)
    src = args.out / "src"
    for i in range(args.scenes):
        params = {**random_params(rng), "wall": args.thin}
        render_sample(mi, src / f"scene{i:02d}", params, *args.size, args.spp, args.baseline)
    polstereo = [sys.executable, "-m", "polstereo.cli.main"]
    subprocess.run([*polstereo, "convert-dataset", str(src), str(args.out / "h5"), "--layout", "mitsuba",
                    "--split", "1", "0", "0", "--quiet"], check=True)
    return subprocess.run([*polstereo, "inspect", str(args.out / "h5" / "train.h5"), "--evidence", "--quick",
                           "--json", str(args.out / "evidence.json")]).returncode


if __name__ == "__main__":
    sys.exit(main())
