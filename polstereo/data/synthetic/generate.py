"""Samples and datasets from the procedural generator: scene -> render -> sensor -> HDF5.

Sample ``i`` of a dataset with seed ``s`` is drawn from its own generator seeded by
``SeedSequence(s, spawn_key=(i,))``, so the data do not depend on how many worker
processes made them, nor on which split the sample lands in.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polstereo.data.h5format import H5Writer, Sample
from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.render import render_pair
from polstereo.data.synthetic.scene import random_scene
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.io.atomic import atomic_file_set

SPLITS = ("train", "val", "test")
GENERATOR_NAME = "polstereo procedural generator (make-synthetic)"
EXPOSURE_RANGE = (0.18, 0.32)  # median unpolarized pixel value, fraction of white level


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of a dataset with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def polarizer_images(stokes: np.ndarray, angles_deg: Sequence[float],
                     extinction_ratio: float | None = None) -> np.ndarray:
    """Intensities behind linear polarizers at ``angles_deg``: ``(3, ...)`` Stokes -> ``(A, ...)``.

    I(θ) = ½(S0 + k·(S1 cos 2θ + S2 sin 2θ)) with k = (ER - 1)/(ER + 1): a polarizer that
    passes a fraction 1/ER of the crossed polarization (transmissions normalised to sum 1)
    sees the degree of linear polarization scaled by k and S0 unchanged; ``None`` is an
    ideal polarizer (k = 1).
    """
    from polstereo.polar.stokes import angles_from_stokes

    if extinction_ratio is not None:
        k = np.float32((extinction_ratio - 1.0) / (extinction_ratio + 1.0))
        stokes = np.concatenate([stokes[:1], stokes[1:] * k])
    return angles_from_stokes(stokes, angles_deg, axis=0)


def sensor_images(stokes: np.ndarray, config: SyntheticConfig, exposure: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Polarizer-angle images as the camera stores them.

    ``stokes`` ``(3, C, H, W)`` radiometric -> ``(A, C, H, W)`` uint8/uint16 with
    I(θ) = ½(S0 + k·(S1 cos 2θ + S2 sin 2θ))·exposure (:func:`polarizer_images`, k from
    ``config.extinction_ratio``), then (if ``config.noise``) shot noise (variance
    I / full_well_e, I in white-level units) and read noise, clipping at white and
    rounding to ``config.bit_depth`` bits.
    """
    images = polarizer_images(stokes * np.float32(exposure), config.angles_deg, config.extinction_ratio)
    if config.noise:
        sigma = np.sqrt(np.maximum(images, 0.0) / config.full_well_e + config.read_noise ** 2)
        images = images + sigma * rng.standard_normal(images.shape, dtype=np.float32)
    white = config.white_level
    dtype = np.uint8 if config.bit_depth == 8 else np.uint16
    return np.clip(np.rint(images * white), 0, white).astype(dtype)


def generate_sample(config: SyntheticConfig, rng: np.random.Generator, name: str = "",
                    scene_id: str = "") -> Sample:
    """Draw a scene, render both views and return a :class:`~polstereo.data.h5format.Sample`.

    Ground truth: disparity (float32, pixels of the left image) of the first surface
    hit, transparency mask (that surface is glass), valid mask (a surface was hit) and
    occlusion mask (the point is hidden from, or outside, the right camera).
    """
    config.validated()
    scene = random_scene(config, rng)
    pair = render_pair(scene)
    # One exposure for both views, as for a synchronised rig.
    unpolarized = 0.5 * pair.left.stokes[0]
    exposure = rng.uniform(*EXPOSURE_RANGE) / max(float(np.median(unpolarized)), 1e-6)
    left = sensor_images(pair.left.stokes, config, exposure, rng)
    right = sensor_images(pair.right.stokes, config, exposure, rng)
    return Sample(left=left, right=right, disparity=pair.disparity, transparent=pair.transparent,
                  valid=np.isfinite(pair.disparity), occlusion=pair.occlusion, name=name, scene_id=scene_id,
                  focal_px=config.focal, baseline_m=config.baseline_m, white_level=float(config.white_level))


def split_counts(num: int, split: Sequence[float]) -> list[int]:
    """Samples per split: proportional, every split with a positive share non-empty when ``num`` allows."""
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) != len(SPLITS) or (fractions < 0).any() \
            or abs(fractions.sum() - 1.0) > 1e-3:
        raise PolstereoError(f"split must be {len(SPLITS)} non-negative fractions (train val test) "
                             f"summing to 1, got {list(split)}", EXIT_USAGE)
    if num < 1:
        raise PolstereoError(f"need at least one sample, got {num}", EXIT_USAGE)
    ideal = fractions / fractions.sum() * num
    counts = np.floor(ideal).astype(int)
    for i in np.argsort(counts - ideal, kind="stable")[:num - counts.sum()]:  # largest remainders
        counts[i] += 1
    wanted = np.flatnonzero(fractions > 0)
    if num >= len(wanted):
        for i in wanted:
            if counts[i] == 0:  # a requested split stays non-empty: take one from the largest
                counts[i] += 1
                counts[np.argmax(counts)] -= 1
    return counts.tolist()


def _sample_at(config: SyntheticConfig, index: int) -> Sample:
    return generate_sample(config, sample_rng(config.seed, index), name=f"synthetic_{index:06d}",
                           scene_id=f"seed{config.seed}_{index:06d}")


def _worker_pool(workers: int):
    """A pool forked from a clean server process that has imported the generator once.

    Not plain fork: the caller may hold open HDF5 files and threads. Not spawn: every
    worker would import numpy/torch again, and scripts without a ``__main__`` guard
    would re-run.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn").Pool(workers)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "polstereo.polar.stokes"])
    return ctx.Pool(workers)


def _samples(config: SyntheticConfig, num: int, workers: int):
    """Samples 0..num-1 in order, from ``workers`` processes."""
    make = functools.partial(_sample_at, config)
    if workers <= 1:
        for i in range(num):
            yield make(i)
        return
    pool = _worker_pool(workers)
    try:
        yield from pool.imap(make, range(num), chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def generate_dataset(out_dir: str | os.PathLike, config: SyntheticConfig, num: int,
                     split: Sequence[float] = (0.8, 0.1, 0.1), workers: int = 1, progress: bool = True,
                     overwrite: bool = False) -> dict[str, Any]:
    """Write ``num`` samples into ``out_dir``/train.h5, val.h5 and test.h5.

    Splits take consecutive sample indices (train first); a split with no samples gets
    no file. Each file records the config, seed and its index range as provenance. The
    split files are written as one set (:func:`~polstereo.io.atomic.atomic_file_set`):
    an earlier set in ``out_dir`` is refused unless ``overwrite``, and then replaced as a
    whole (a split this run leaves empty loses its old file); an interrupted run leaves
    the old set. Same config (seed included) -> identical data, whatever ``workers``.

    Returns a summary: files with their sample counts, time taken, transparent share.
    """
    from tqdm import tqdm

    config.validated()
    if config.textures != "procedural":  # a bad texture folder is refused before any file is touched
        from polstereo.data.synthetic.photos import photo_library
        photo_library(config.texture_dir, config.channels)
    counts = split_counts(num, split)
    if workers < 1:
        raise PolstereoError(f"workers must be at least 1, got {workers}", EXIT_USAGE)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PolstereoError(f"{out}: exists and is not a directory; give a folder for train/val/test.h5")
    earlier = [out / f"{name}.h5" for name in SPLITS if (out / f"{name}.h5").exists()]
    if earlier and not overwrite:
        raise PolstereoError(f"{earlier[0]} exists (output of an earlier run); pass --overwrite to replace the "
                             f"split files in {out} as a whole")
    start = time.perf_counter()
    files: dict[str, Any] = {}
    transparent = total = 0
    samples = _samples(config, num, min(workers, num))
    # the splits are staged and replace the earlier set together when the block ends
    with atomic_file_set(out, [f"{name}.h5" for name in SPLITS]) as staged:
        bar = tqdm(total=num, disable=not progress, unit="sample", desc="make-synthetic")
        try:
            first = 0
            for name, count in zip(SPLITS, counts):
                if count == 0:
                    continue
                provenance = {"source": GENERATOR_NAME, "generator": "polstereo.data.synthetic",
                              "config": config.to_dict(), "seed": config.seed, "split": name,
                              "sample_indices": [first, first + count], "num_total": num,
                              "split_fractions": [float(s) for s in split]}
                path = out / f"{name}.h5"
                with H5Writer(staged / path.name, angles_deg=config.angles_deg, color=config.color,
                              provenance=provenance) as writer:
                    for _ in range(count):
                        sample = next(samples)
                        writer.append(sample)
                        transparent += int(sample.transparent.sum())
                        total += sample.transparent.size
                        bar.update(1)
                files[name] = {"path": str(path), "samples": count, "first_index": first}
                first += count
        finally:
            bar.close()
            samples.close()  # the worker processes end before the set is committed
    seconds = time.perf_counter() - start
    return {"out_dir": str(out), "num": num, "seed": config.seed, "workers": workers, "files": files,
            "size": [config.width, config.height], "bit_depth": config.bit_depth, "color": config.color,
            "textures": config.textures, "rig": config.rig,
            "transparent_share": transparent / max(total, 1), "seconds": seconds,
            "samples_per_second": num / max(seconds, 1e-9)}
