"""Throughput of the procedural generator (``polstereo make-synthetic``).

Prints samples/s end to end (scene, both views, ground truth, noise, HDF5 writing) at
320x256 and 640x480 with 1 and 2 worker processes, plus the single-process time per
stage. "1, 1 thr" is one process limited to one BLAS and one OpenCV thread, as each
worker of a pool runs: the baseline that worker scaling divides by. Not a test: run ``python bench/bench_synthetic.py [--num N] [--sizes 320x256 ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_dataset, sample_rng, sensor_images
from polstereo.data.synthetic.render import render_pair
from polstereo.data.synthetic.scene import random_scene


def stage_times(config: SyntheticConfig, num: int) -> dict[str, float]:
    """Mean milliseconds per sample of scene sampling, rendering (both views + GT) and the sensor."""
    totals = {"scene": 0.0, "render": 0.0, "sensor": 0.0}
    for i in range(num):
        rng = sample_rng(config.seed, i)
        t0 = time.perf_counter()
        scene = random_scene(config, rng)
        t1 = time.perf_counter()
        pair = render_pair(scene)
        t2 = time.perf_counter()
        for view in (pair.left, pair.right):
            sensor_images(view.stokes, config, 1.0, rng)
        t3 = time.perf_counter()
        totals["scene"] += t1 - t0
        totals["render"] += t2 - t1
        totals["sensor"] += t3 - t2
    return {k: 1000 * v / num for k, v in totals.items()}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def one_thread():
    """The main process as a make-synthetic worker runs: one BLAS/OpenMP and one OpenCV thread."""
    threads = cv2.getNumThreads()
    with threadpool_limits(limits=1):
        cv2.setNumThreads(1)
        try:
            yield
        finally:
            cv2.setNumThreads(threads)


def end_to_end(config: SyntheticConfig, num: int, workers: int,
               shard_size: int | None = None) -> tuple[float, float | None, float]:
    """Samples per second of ``generate_dataset`` (HDF5 writing and pool start-up included),
    CPU ms per sample (all processes; None with workers, which are the fork server's
    children and invisible to os.times here) and CPU ms per sample of the main (writing) process.

    On a machine shared with other jobs the wall-clock rate says little about scaling; CPU
    time per sample that stays flat as workers are added means the work itself scales.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, main0 = _cpu_seconds(), time.process_time()
        start = time.perf_counter()
        generate_dataset(tmp, config, num, split=(1.0, 0.0, 0.0), workers=workers, progress=False,
                         shard_size=shard_size)
        wall = time.perf_counter() - start
        cpu_ms = 1000 * (_cpu_seconds() - cpu0) / num if workers == 1 else None
        return num / wall, cpu_ms, 1000 * (time.process_time() - main0) / num


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=20, help="samples per measurement at 320x256 (scaled by area)")
    parser.add_argument("--sizes", nargs="+", default=["320x256", "640x480"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=None,
                        help="write shards of N samples (then each worker writes whole shards itself)")
    args = parser.parse_args()

    # Warm-up: imports (torch via polstereo.polar.stokes), first calls and the worker pool's
    # fork server (started once per process, it preloads the generator) stay out of the table.
    sensor_images(np.zeros((3, 1, 4, 4), np.float32), SyntheticConfig(), 1.0, np.random.default_rng(0))
    end_to_end(SyntheticConfig(width=32, height=24), 2, max(args.workers))
    shards = "" if args.shard_size is None else f", shards of {args.shard_size}"
    print(f"polstereo make-synthetic throughput ({os.cpu_count()} CPU cores, default scene mix{shards})")
    print(f"{'size':>9} | {'workers':>8} | {'samples':>7} | {'samples/s':>9} | {'CPU ms/sample':>13} | "
          f"{'main ms/sample':>14} | per sample (1 process): scene / render / sensor ms")
    print("-" * 128)
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        config = SyntheticConfig(width=width, height=height)
        num = max(8, round(args.num * 320 * 256 / (width * height)))
        stages = " / ".join(f"{ms:.0f}" for ms in stage_times(config, min(num, 8)).values())
        runs = [(str(w), w, contextlib.nullcontext) for w in args.workers]
        if 1 in args.workers:  # one process, as each worker of a pool runs: the baseline of the scaling
            runs.insert(args.workers.index(1) + 1, ("1, 1 thr", 1, one_thread))
        for label, workers, threads in runs:
            with threads():
                rate, cpu_ms, main_ms = end_to_end(config, num, workers, args.shard_size)
            detail = stages if label == runs[0][0] else ""
            print(f"{size:>9} | {label:>8} | {num:>7} | {rate:>9.2f} | {'n/a' if cpu_ms is None else f'{cpu_ms:.0f}':>13} | "
                  f"{main_ms:>14.1f} | {detail}")


if __name__ == "__main__":
    main()
