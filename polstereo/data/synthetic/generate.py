"""Samples and datasets from the procedural generator: scene -> render -> sensor -> HDF5.

Sample ``i`` of a dataset with seed ``s`` is drawn from its own generator seeded by
``SeedSequence(s, spawn_key=(i,))``, so the data do not depend on how many worker
processes made them, nor on which split the sample lands in.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polstereo.data.h5.reader import H5Reader
from polstereo.data.h5.schema import Sample
from polstereo.data.h5.writer import EncodedSample, H5Writer, encode_sample
from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.render import render_pair
from polstereo.data.synthetic.scene import Scene, random_scene
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.io.atomic import atomic_file_set

SPLITS = ("train", "val", "test")
GENERATOR_NAME = "polstereo procedural generator (make-synthetic)"


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
    """Draw a scene, render both views and return a :class:`~polstereo.data.h5.schema.Sample`.

    Ground truth: disparity (float32, pixels of the left image) of the first surface
    hit, transparency mask (that surface is glass), valid mask (a surface was hit) and
    occlusion mask (the point is hidden from, or outside, the right camera). The sample
    records the kinds of glass the left view shows (:func:`visible_glass_kinds`) and the
    scene's lighting family.
    """
    config.validated()
    scene = random_scene(config, rng)
    pair = render_pair(scene)
    # One exposure for both views, as for a synchronised rig.
    unpolarized = 0.5 * pair.left.stokes[0]
    exposure = rng.uniform(*config.exposure) / max(float(np.median(unpolarized)), 1e-6)
    left = sensor_images(pair.left.stokes, config, exposure, rng)
    right = sensor_images(pair.right.stokes, config, exposure, rng)
    return Sample(left=left, right=right, disparity=pair.disparity, transparent=pair.transparent,
                  valid=np.isfinite(pair.disparity), occlusion=pair.occlusion, name=name, scene_id=scene_id,
                  focal_px=config.focal, baseline_m=config.baseline_m, white_level=float(config.white_level),
                  glass_kinds=visible_glass_kinds(scene, pair.left.object_index), lighting=scene.lighting or None)


def visible_glass_kinds(scene: Scene, object_index: np.ndarray) -> tuple[str, ...]:
    """The distinct kinds (sorted) of the glass objects that are the first surface of at least
    one pixel of ``object_index`` ``(H, W)`` (indices into ``scene.objects``, -1 for none):
    glass placed out of view or hidden behind other objects is not in the sample."""
    seen = np.unique(object_index[object_index >= 0])
    return tuple(sorted({scene.objects[i].glass_kind for i in seen.tolist()} - {""}))


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


def _encoded_sample_at(config: SyntheticConfig, index: int) -> tuple[EncodedSample, int, int]:
    """Sample ``index`` rendered and compressed (the expensive part of writing, done where it
    is rendered), with its transparent and total pixel counts."""
    sample = _sample_at(config, index)
    encoded = encode_sample(sample, len(config.angles_deg), 3 if config.color == "rgb" else 1)
    return encoded, int(sample.transparent.sum()), int(sample.transparent.size)


def _one_thread_per_worker() -> None:
    """N workers on N cores: threads inside each would only fight over the same cores.

    OpenBLAS's threads matter most: the renderer's small matrix products spin them for
    about a third of a sample's CPU time (docs/notebook/2026-12-03-generator-workers.md).
    The samples do not change, bit for bit.
    """
    import sys

    import cv2
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # BLAS and OpenMP pools, for the rest of the process
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _worker_pool(workers: int):
    """A pool forked from a clean server process that has imported the generator once.

    Not plain fork: the caller may hold open HDF5 files and threads. Not spawn: every
    worker would import numpy/torch again, and scripts without a ``__main__`` guard
    would re-run.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread_per_worker)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "polstereo.polar.stokes"])
    return ctx.Pool(workers, initializer=_one_thread_per_worker)


def _pooled(func, items: Sequence, workers: int):
    """``func(item)`` for each item, in order, by ``workers`` processes (this one for 1)."""
    if workers <= 1:
        yield from map(func, items)
        return
    pool = _worker_pool(workers)
    try:
        yield from pool.imap(func, items, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _encoded_samples(config: SyntheticConfig, indices: Sequence[int], workers: int):
    """Samples ``indices`` in order, rendered and compressed by ``workers`` processes."""
    return _pooled(functools.partial(_encoded_sample_at, config), indices, workers)


def _write_encoded(path: Path, config: SyntheticConfig, wanted: "_OutputFile", samples,
                   on_sample: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Write the next ``wanted.count`` of the encoded ``samples`` as the file ``path``;
    returns its transparent and total pixel counts."""
    transparent = total = 0
    with H5Writer(path, angles_deg=config.angles_deg, color=config.color, provenance=wanted.provenance) as writer:
        for _ in range(wanted.count):
            encoded, transparent_pixels, pixels = next(samples)
            writer.append_encoded(encoded)
            transparent += transparent_pixels
            total += pixels
            on_sample()
    return transparent, total


def _write_file(config: SyntheticConfig, folder: Path, wanted: "_OutputFile") -> tuple[int, int]:
    """Render and write one whole output file (a shard) into ``folder``, as a pool worker does
    when the output is sharded."""
    samples = (_encoded_sample_at(config, i) for i in range(wanted.first, wanted.first + wanted.count))
    return _write_encoded(folder / wanted.name, config, wanted, samples)


@dataclass(frozen=True)
class _OutputFile:
    """One file of the output set: a whole split, or one shard of it."""

    name: str
    split: str
    first: int  # index of its first sample
    count: int
    provenance: dict[str, Any]


def shard_name(split_name: str, shard: int) -> str:
    """The file name of shard ``shard`` of a split: ``train-00000.h5``."""
    return f"{split_name}-{shard:05d}.h5"


def _output_files(config: SyntheticConfig, num: int, counts: Sequence[int], split: Sequence[float],
                  shard_size: int | None) -> list[_OutputFile]:
    files = []
    first = 0
    for split_name, count in zip(SPLITS, counts):
        base = {"source": GENERATOR_NAME, "generator": "polstereo.data.synthetic", "config": config.to_dict(),
                "seed": config.seed, "split": split_name, "sample_indices": [first, first + count],
                "num_total": num, "split_fractions": [float(s) for s in split]}
        if count and shard_size is None:
            files.append(_OutputFile(f"{split_name}.h5", split_name, first, count, base))
        elif count:
            num_shards = -(-count // shard_size)
            for k in range(num_shards):
                lo, hi = first + k * shard_size, min(first + (k + 1) * shard_size, first + count)
                provenance = dict(base, sample_indices=[lo, hi], split_indices=[first, first + count],
                                  shard=k, num_shards=num_shards)
                files.append(_OutputFile(shard_name(split_name, k), split_name, lo, hi - lo, provenance))
        first += count
    return files


def _earlier_output(out: Path) -> list[Path]:
    """Split files (whole or sharded) of an earlier run in ``out``."""
    found = [out / f"{name}.h5" for name in SPLITS if (out / f"{name}.h5").exists()]
    for name in SPLITS:
        found += sorted(out.glob(f"{name}-[0-9][0-9][0-9][0-9][0-9].h5"))
    return found


def _complete_shard(path: Path, wanted: _OutputFile) -> bool:
    """Whether ``path`` (left in the staging folder by an interrupted run) is exactly ``wanted``:
    closed cleanly with all its samples, from the same config and sample range."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            provenance = json.loads(f.attrs["provenance"])
            complete = int(f.attrs.get("num_samples", -1)) == wanted.count
    except Exception:  # noqa: BLE001 - anything unreadable is simply redone
        return False
    return complete and provenance == json.loads(json.dumps(wanted.provenance, sort_keys=True, default=str))


RESUME_STAGING = ".partial-make-synthetic"  # the staging folder a sharded run keeps when interrupted


def generate_dataset(out_dir: str | os.PathLike, config: SyntheticConfig, num: int,
                     split: Sequence[float] = (0.8, 0.1, 0.1), workers: int = 1, progress: bool = True,
                     overwrite: bool = False, shard_size: int | None = None,
                     resume: bool = False) -> dict[str, Any]:
    """Write ``num`` samples into ``out_dir``/train.h5, val.h5 and test.h5.

    Splits take consecutive sample indices (train first); a split with no samples gets
    no file. Each file records the config, seed and its index range as provenance. The
    split files are written as one set (:func:`~polstereo.io.atomic.atomic_file_set`):
    an earlier set in ``out_dir`` is refused unless ``overwrite``, and then replaced as a
    whole (a split this run leaves empty loses its old file); an interrupted run leaves
    the old set. Same config (seed included) -> identical data, whatever ``workers``:
    the workers render and compress, this process only copies the compressed chunks.

    ``shard_size`` N splits each split into files of N samples, ``train-00000.h5``,
    ``train-00001.h5``, ... (the same samples as the unsharded files, in order); with
    several ``workers`` each worker writes whole shards itself. A sharded
    run keeps its finished shards when interrupted (in ``out_dir``/.partial-make-synthetic);
    ``resume`` reuses those and makes only the rest, and the result is the set an
    uninterrupted run makes. Without ``resume`` a kept staging folder is discarded.

    Returns a summary: files with their sample counts, time taken, transparent share.
    """
    counts = _checked_request(config, num, split, workers, shard_size, resume)
    out = Path(out_dir)
    earlier = _earlier_output_to_replace(out, overwrite)
    outputs = _output_files(config, num, counts, split, shard_size)
    staging_name = _staging_name(out, shard_size, resume)
    start = time.perf_counter()
    # every old split file is in the set: the new one replaces it or, when not made again, it goes
    names = [f.name for f in outputs] + [p.name for p in earlier if p.name not in {f.name for f in outputs}]
    with atomic_file_set(out, names, staging_name=staging_name) as staged:
        transparent, total, reused = _make_output_files(config, staged, outputs, num, workers, progress, resume,
                                                        sharded=shard_size is not None)
    seconds = time.perf_counter() - start
    return {"out_dir": str(out), "num": num, "seed": config.seed, "workers": workers,
            "files": _files_summary(out, outputs, shard_size),
            "size": [config.width, config.height], "bit_depth": config.bit_depth, "color": config.color,
            "textures": config.textures, "rig": config.rig, "shard_size": shard_size, "resumed_files": reused,
            "transparent_share": transparent / max(total, 1), "seconds": seconds,
            "samples_per_second": num / max(seconds, 1e-9)}


def _checked_request(config: SyntheticConfig, num: int, split: Sequence[float], workers: int,
                     shard_size: int | None, resume: bool) -> list[int]:
    """The samples per split of :func:`generate_dataset`'s request; a request it cannot make is a
    PolstereoError before any file is touched."""
    config.validated()
    if config.textures != "procedural":  # a bad texture folder is refused here too
        from polstereo.data.synthetic.photos import photo_library
        photo_library(config.texture_dir, config.channels)
    counts = split_counts(num, split)
    if workers < 1:
        raise PolstereoError(f"workers must be at least 1, got {workers}", EXIT_USAGE)
    if shard_size is not None and shard_size < 1:
        raise PolstereoError(f"shard size must be at least 1, got {shard_size}", EXIT_USAGE)
    if resume and shard_size is None:
        raise PolstereoError("resume needs a shard size (--shard-size): only sharded output keeps finished "
                             "files when interrupted", EXIT_USAGE)
    return counts


def _earlier_output_to_replace(out: Path, overwrite: bool) -> list[Path]:
    """The split files of an earlier run in ``out``, which the new set replaces; refused unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise PolstereoError(f"{out}: exists and is not a directory; give a folder for train/val/test.h5")
    earlier = _earlier_output(out) if out.is_dir() else []
    if earlier and not overwrite:
        raise PolstereoError(f"{earlier[0]} exists (output of an earlier run); pass --overwrite to replace the "
                             f"split files in {out} as a whole")
    return earlier


def _staging_name(out: Path, shard_size: int | None, resume: bool) -> str | None:
    """The staging folder a sharded run keeps when interrupted (:data:`RESUME_STAGING`; one kept by
    an earlier run is discarded unless ``resume``), or None for unsharded output (a fresh one)."""
    if shard_size is None:
        return None
    kept = out / RESUME_STAGING
    if kept.is_dir() and not resume:
        shutil.rmtree(kept)
    return RESUME_STAGING


def _make_output_files(config: SyntheticConfig, staged: Path, outputs: Sequence[_OutputFile], num: int,
                       workers: int, progress: bool, resume: bool, sharded: bool) -> tuple[int, int, int]:
    """Write the files ``outputs`` (``num`` samples in all) into the staging folder ``staged``,
    reusing those an interrupted run finished there when ``resume``; returns the set's transparent
    and total pixel counts and the number of files reused."""
    from tqdm import tqdm

    for leftover in staged.glob(".*.partial-*"):  # a shard a killed run was writing: redone
        leftover.unlink()
    todo = [f for f in outputs if not (resume and _complete_shard(staged / f.name, f))]
    transparent, total = _pixel_counts(staged, [f for f in outputs if f not in todo])
    bar = tqdm(total=num, initial=num - sum(f.count for f in todo), disable=not progress, unit="sample",
               desc="make-synthetic")
    if sharded and workers > 1 and len(todo) > 1:  # each worker writes whole shards
        transparent_made, total_made = _write_shards_in_workers(config, staged, todo, workers, bar)
    else:
        transparent_made, total_made = _write_in_order(config, staged, todo, workers, bar)
    return transparent + transparent_made, total + total_made, len(outputs) - len(todo)


def _pixel_counts(folder: Path, files: Sequence[_OutputFile]) -> tuple[int, int]:
    """Transparent and total pixel counts of the finished ``files`` in ``folder``."""
    transparent = total = 0
    for f in files:
        with H5Reader(folder / f.name) as reader:
            for i in range(len(reader)):
                mask = reader.read(i, normalize=False, fields=("transparent",)).transparent
                transparent += int(mask.sum())
                total += mask.size
    return transparent, total


def _write_shards_in_workers(config: SyntheticConfig, folder: Path, todo: Sequence[_OutputFile], workers: int,
                             bar) -> tuple[int, int]:
    """Render and write the files ``todo`` into ``folder``, each whole by one of ``workers`` processes;
    returns their transparent and total pixel counts."""
    transparent = total = 0
    shards = _pooled(functools.partial(_write_file, config, folder), todo, min(workers, len(todo)))
    try:
        for f, (transparent_pixels, pixels) in zip(todo, shards):
            transparent += transparent_pixels
            total += pixels
            bar.update(f.count)
    finally:
        bar.close()
        shards.close()
    return transparent, total


def _write_in_order(config: SyntheticConfig, folder: Path, todo: Sequence[_OutputFile], workers: int,
                    bar) -> tuple[int, int]:
    """Write the files ``todo`` into ``folder`` from this process, their samples rendered and compressed
    in order by ``workers`` processes; returns their transparent and total pixel counts."""
    transparent = total = 0
    samples = _encoded_samples(config, [i for f in todo for i in range(f.first, f.first + f.count)],
                               min(workers, max(sum(f.count for f in todo), 1)))
    try:
        for f in todo:
            transparent_pixels, pixels = _write_encoded(folder / f.name, config, f, samples, lambda: bar.update(1))
            transparent += transparent_pixels
            total += pixels
    finally:
        bar.close()
        samples.close()  # the worker processes end before the set is committed
    return transparent, total


def _files_summary(out: Path, outputs: Sequence[_OutputFile], shard_size: int | None) -> dict[str, Any]:
    """Per split: its path (a glob of its shards when sharded), sample count and first sample index."""
    files: dict[str, Any] = {}
    for f in outputs:
        entry = files.setdefault(f.split, {"path": str(out / f.name), "samples": 0, "first_index": f.first})
        entry["samples"] += f.count
        if shard_size is not None:
            entry["path"] = str(out / f"{f.split}-*.h5")
            entry.setdefault("shards", []).append(str(out / f.name))
    return files
