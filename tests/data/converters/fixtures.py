"""Writers for tiny source trees in each layout (tests generate data, nothing is committed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polstereo.data.h5 import Sample
from polstereo.io.images import read_exr, write_disparity, write_image

ANGLES = (0, 45, 90, 135)


def folder_sample(rng: np.random.Generator, h: int = 12, w: int = 16, dtype=np.uint8, channels: int = 1,
                  high: int | None = None) -> Sample:
    """Random arrays for one sample, as the folder layout would store them."""
    high = high if high is not None else (np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else None)
    shape = (4, channels, h, w)
    if high is None:
        left, right = (rng.random(shape, dtype=np.float32) for _ in range(2))
    else:
        left, right = (rng.integers(0, high + 1, shape).astype(dtype) for _ in range(2))
    disparity = (1 + rng.random((h, w)) * 8).astype(np.float32)
    disparity[0, :2] = np.nan
    return Sample(left=left, right=right, disparity=disparity, transparent=rng.random((h, w)) > 0.6,
                  occlusion=rng.random((h, w)) > 0.8)


def write_folder_sample(sample_dir: Path, sample: Sample, disparity_ext: str = ".pfm", disp_scale: float = 256.0,
                        image_ext: str = ".png", meta: dict | None = None, occlusion: bool = True) -> Path:
    """``sample_dir/left_{angle}.png`` ... in the default folder patterns."""
    sample_dir.mkdir(parents=True, exist_ok=True)
    for view in ("left", "right"):
        stack = getattr(sample, view)
        for i, angle in enumerate(ANGLES):
            image = stack[i, 0] if stack.shape[1] == 1 else np.moveaxis(stack[i], 0, -1)
            write_image(sample_dir / f"{view}_{angle}{image_ext}", image)
    write_disparity(sample_dir / f"disparity{disparity_ext}", sample.disparity, scale=disp_scale)
    write_image(sample_dir / "mask.png", sample.transparent.astype(np.uint8) * 255)
    if occlusion:
        write_image(sample_dir / "occlusion.png", sample.occlusion.astype(np.uint8))
    if meta is not None:
        (sample_dir / "meta.json").write_text(json.dumps(meta))
    return sample_dir


def write_folder_dataset(src: Path, rng: np.random.Generator, count: int, **kwargs) -> dict[str, Sample]:
    """``count`` samples named s00, s01, ...; returns name -> the arrays written."""
    samples = {}
    for i in range(count):
        sample = folder_sample(rng, **kwargs)
        write_folder_sample(src / f"s{i:02d}", sample)
        samples[f"s{i:02d}"] = sample
    return samples


# ---------------------------------------------------------------------------- mitsuba
MITSUBA_VARIANT = "scalar_spectral_polarized"  # the llvm_* variants crash on these machines


def mitsuba_focal_px(width: int, fov_deg: float) -> float:
    """Focal length in pixels of Mitsuba's perspective sensor (fov along x)."""
    return (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)


def render_mitsuba_view(camera_x: float, width: int = 64, height: int = 48, fov_deg: float = 40.0,
                        reflection_only: bool = False, spp: int = 16, depth_aov: bool = False):
    """A glass sphere (radius 1 at the origin) seen from (camera_x, 0, 4) looking down -z.

    Returns (mitsuba Bitmap with named channels, the render tensor as numpy). The
    integrator is ``stokes`` around a path tracer, or with ``depth_aov`` an ``aov``
    integrator (``depth:depth``) around the path tracer, giving ``depth.T`` too.
    ``reflection_only`` turns off transmission, leaving Fresnel reflection whose
    polarization is known from the surface normal.
    """
    import mitsuba as mi

    mi.set_variant(MITSUBA_VARIANT)
    bsdf = {"type": "dielectric", "int_ior": 1.5}
    if reflection_only:
        bsdf["specular_transmittance"] = 0.0
    integrator = {"type": "path", "max_depth": 6}
    if depth_aov:
        integrator = {"type": "aov", "aovs": "depth:depth", "integrator": integrator}
    T = mi.ScalarTransform4f
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "stokes", "integrator": integrator},
        "sensor": {"type": "perspective", "fov": fov_deg,
                   "to_world": T().look_at(origin=[camera_x, 0, 4], target=[camera_x, 0, 0], up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": width, "height": height, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": spp}},
        "sphere": {"type": "sphere", "radius": 1.0, "bsdf": bsdf},
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": 0.5}},
        "lamp": {"type": "rectangle", "to_world": T().translate([2.0, 3.0, 2.0]).rotate([1, 0, 0], 90).scale(1.5),
                 "emitter": {"type": "area", "radiance": {"type": "rgb", "value": 8.0}}},
    })
    tensor = mi.render(scene, seed=int(abs(camera_x) * 1000) + spp)
    return scene.sensors()[0].film().bitmap(raw=False), np.array(tensor)


def write_mitsuba_sample(sample_dir: Path, baseline_m: float = 0.2, width: int = 64, height: int = 48,
                         fov_deg: float = 40.0, reflection_only: bool = False, unnamed_dir: Path | None = None,
                         depth_in_stokes_file: bool = False) -> dict:
    """left.exr / right.exr, depth (a separate 1-spp depth.exr, or a ``depth.T`` channel of
    left.exr), mask.png (depth > 0) and meta.json for a rectified pair; returns the meta.

    Depth is rendered at 1 sample per pixel in depth.exr: averaging hits and misses at the
    silhouette would give depths between the sphere's and 0. With ``unnamed_dir`` the same
    Stokes renders are also written with ``mi.util.write_bitmap`` (channels ch00 ...).
    """
    import mitsuba as mi

    sample_dir.mkdir(parents=True, exist_ok=True)
    for view, x in (("left", -baseline_m / 2), ("right", baseline_m / 2)):
        bitmap, tensor = render_mitsuba_view(x, width, height, fov_deg, reflection_only, depth_aov=depth_in_stokes_file)
        bitmap.write(str(sample_dir / f"{view}.exr"))
        if unnamed_dir is not None:
            unnamed_dir.mkdir(parents=True, exist_ok=True)
            mi.util.write_bitmap(str(unnamed_dir / f"{view}.exr"), tensor, write_async=False)
        if view == "left" and not depth_in_stokes_file:
            depth_bitmap, _ = render_mitsuba_view(x, width, height, fov_deg, reflection_only, spp=1, depth_aov=True)
            depth_bitmap.write(str(sample_dir / "depth.exr"))
    depth = read_exr(sample_dir / ("left.exr" if depth_in_stokes_file else "depth.exr"))["depth.T"]
    write_image(sample_dir / "mask.png", (depth > 0).astype(np.uint8))
    meta = {"focal_px": float(mitsuba_focal_px(width, fov_deg)), "baseline_m": baseline_m}
    (sample_dir / "meta.json").write_text(json.dumps(meta))
    return meta
