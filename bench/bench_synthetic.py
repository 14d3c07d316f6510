"""Throughput of the procedural generator (``polstereo make-synthetic``).

Prints samples/s end to end (scene, both views, ground truth, noise, HDF5 writing) at
320x256 and 640x480 with 1 and 2 worker processes, plus the single-process time per
stage. Not a test: run ``python bench/bench_synthetic.py [--num N] [--sizes 320x256 ...]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

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


def end_to_end(config: SyntheticConfig, num: int, workers: int) -> float:
    """Samples per second of ``generate_dataset`` (HDF5 writing and pool start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(tmp, config, num, split=(1.0, 0.0, 0.0), workers=workers, progress=False)
        return num / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=20, help="samples per measurement at 320x256 (scaled by area)")
    parser.add_argument("--sizes", nargs="+", default=["320x256", "640x480"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()

    # Warm-up: imports (torch via polstereo.polar.stokes), first calls and the worker pool's
    # fork server (started once per process, it preloads the generator) stay out of the table.
    sensor_images(np.zeros((3, 1, 4, 4), np.float32), SyntheticConfig(), 1.0, np.random.default_rng(0))
    end_to_end(SyntheticConfig(width=32, height=24), 2, max(args.workers))
    print(f"polstereo make-synthetic throughput ({os.cpu_count()} CPU cores, default scene mix)")
    print(f"{'size':>9} | {'workers':>7} | {'samples':>7} | {'samples/s':>9} | "
          "per sample (1 process): scene / render / sensor ms")
    print("-" * 96)
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        config = SyntheticConfig(width=width, height=height)
        num = max(8, round(args.num * 320 * 256 / (width * height)))
        stages = " / ".join(f"{ms:.0f}" for ms in stage_times(config, min(num, 8)).values())
        for workers in args.workers:
            rate = end_to_end(config, num, workers)
            detail = stages if workers == args.workers[0] else ""
            print(f"{size:>9} | {workers:>7} | {num:>7} | {rate:>9.2f} | {detail}")


if __name__ == "__main__":
    main()
