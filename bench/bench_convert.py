"""convert-dataset throughput for the folder layout, with 1 and 2 worker processes.

Generates a temporary folder dataset (8-bit mono PNG angle images, PFM disparity, PNG
mask; smooth textures that compress like real images) and prints samples/s for each
worker count. Not a test: run `python bench/bench_convert.py [--samples N --size W H]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from polstereo.data.converters import ConvertConfig, convert_dataset
from polstereo.io.images import write_disparity, write_image

ANGLES = (0, 45, 90, 135)


def write_folder_source(root: Path, num: int, w: int, h: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(num):
        base = np.clip(cv2.resize(rng.random((h // 8, w // 8)).astype(np.float32), (w, h),
                                  interpolation=cv2.INTER_CUBIC), 0, 1)
        sample_dir = root / f"s{i:04d}"
        for view, shift in (("left", 0), ("right", -8)):
            for k, angle in enumerate(ANGLES):
                image = np.clip(base * (0.8 + 0.1 * k) + rng.normal(0, 0.01, base.shape), 0, 1)
                write_image(sample_dir / f"{view}_{angle}.png", np.roll((image * 255).astype(np.uint8), shift, axis=1))
        write_disparity(sample_dir / "disparity.pfm", (base * 60).astype(np.float32))
        write_image(sample_dir / "mask.png", (base > 0.6).astype(np.uint8) * 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 256), metavar=("W", "H"))
    parser.add_argument("--workers", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--compression", default="gzip", choices=("gzip", "lzf", "none"))
    args = parser.parse_args()
    w, h = args.size
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        write_folder_source(src, args.samples, w, h)
        print(f"folder layout, {args.samples} samples {w}x{h}, mono uint8, {args.compression}")
        print(f"{'workers':>8} {'seconds':>8} {'samples/s':>10}")
        for workers in args.workers:
            started = time.perf_counter()
            report = convert_dataset(ConvertConfig(src=src, out=Path(tmp) / f"out{workers}", workers=workers,
                                                   compression=args.compression))
            seconds = time.perf_counter() - started
            print(f"{workers:>8d} {seconds:>8.2f} {report.total_written / seconds:>10.1f}")


if __name__ == "__main__":
    main()
