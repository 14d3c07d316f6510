"""Random-crop read throughput: polstereo HDF5 against the PNG folder layout.

Prints a table of crops/s (256x320 crops, 4 angles x 2 views + disparity) read through a
torch DataLoader with 2 worker processes in batches of 8 (the training batch), for the
same samples stored as HDF5 (gzip and lzf) and as per-sample PNG folders (which must
decode whole images). Both deliver the stored integers, as the training loader does
(scaling to [0, 1] happens on the training device).
Not a test: run `python bench/bench_h5_read.py [--samples N --size W H --crops N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from polstereo.data.h5 import H5Reader, Sample, write_samples

ANGLES = (0, 45, 90, 135)


def make_samples(num: int, w: int, h: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(num):
        # smooth texture compresses like real images do, unlike white noise
        base = np.clip(cv2.resize(rng.random((h // 8, w // 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
        stack = np.stack([np.clip(base * (0.8 + 0.1 * k) + rng.normal(0, 0.01, base.shape), 0, 1) for k in range(4)])
        img = (stack[:, None] * 255).astype(np.uint8)
        disp = (base * 60).astype(np.float32)
        samples.append(Sample(left=img, right=np.roll(img, -8, axis=-1), disparity=disp,
                              transparent=base > 0.6, name=f"s{i:04d}"))
    return samples


def write_png_folder(root: Path, samples: list[Sample]) -> None:
    for s in samples:
        d = root / s.name
        d.mkdir(parents=True)
        for view in ("left", "right"):
            for k, angle in enumerate(ANGLES):
                cv2.imwrite(str(d / f"{view}_{angle}.png"), getattr(s, view)[k, 0])
        cv2.imwrite(str(d / "disparity.png"), np.round(s.disparity * 256).astype(np.uint16))
        cv2.imwrite(str(d / "mask.png"), s.transparent.astype(np.uint8) * 255)


class CropsH5(Dataset):
    def __init__(self, path: Path, crop: tuple[int, int], count: int):
        self.reader, self.crop, self.count = H5Reader(path), crop, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        rng = np.random.default_rng(i)
        idx = int(rng.integers(len(self.reader)))
        h, w = self.reader.shapes[idx]
        y0, x0 = int(rng.integers(h - self.crop[0] + 1)), int(rng.integers(w - self.crop[1] + 1))
        # stored integers cross the process boundary (4x fewer bytes than float32); the
        # trainer scales them to [0, 1] on the device
        s = self.reader.read(idx, crop=(y0, x0, *self.crop), normalize=False, fields=("disparity",))
        return torch.from_numpy(s.left), torch.from_numpy(s.right), torch.from_numpy(s.disparity)


class CropsPNG(Dataset):
    def __init__(self, root: Path, crop: tuple[int, int], count: int):
        self.dirs, self.crop, self.count = sorted(p for p in root.iterdir()), crop, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        rng = np.random.default_rng(i)
        d = self.dirs[int(rng.integers(len(self.dirs)))]
        views = {v: np.stack([cv2.imread(str(d / f"{v}_{a}.png"), cv2.IMREAD_UNCHANGED) for a in ANGLES])[:, None]
                 for v in ("left", "right")}
        disp = cv2.imread(str(d / "disparity.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0
        cv2.imread(str(d / "mask.png"), cv2.IMREAD_UNCHANGED)
        h, w = disp.shape
        y0, x0 = int(rng.integers(h - self.crop[0] + 1)), int(rng.integers(w - self.crop[1] + 1))
        ys, xs = slice(y0, y0 + self.crop[0]), slice(x0, x0 + self.crop[1])
        return (torch.from_numpy(np.ascontiguousarray(views["left"][..., ys, xs])),
                torch.from_numpy(np.ascontiguousarray(views["right"][..., ys, xs])),
                torch.from_numpy(np.ascontiguousarray(disp[ys, xs])))


def throughput(dataset: Dataset, workers: int, batch: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    first = next(it)  # worker start-up is not read throughput
    start, n = time.perf_counter(), 0
    for b in it:
        n += len(b[0])
    del first
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="crops per loader batch (the training batch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = make_samples(args.samples, *args.size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for codec in ("gzip", "lzf"):
            write_samples(tmp / f"{codec}.h5", samples, compression=codec)
        write_png_folder(tmp / "png", samples)
        size = lambda p: sum(f.stat().st_size for f in (p.rglob("*") if p.is_dir() else [p])) / 2**20
        rows = [(f"HDF5 {codec}", throughput(CropsH5(tmp / f"{codec}.h5", tuple(args.crop), args.crops), args.workers,
                                             args.batch),
                 size(tmp / f"{codec}.h5")) for codec in ("gzip", "lzf")]
        png_rate = throughput(CropsPNG(tmp / "png", tuple(args.crop), args.crops), args.workers, args.batch)
        rows.append(("PNG folder", png_rate, size(tmp / "png")))
    print(f"random {args.crop[0]}x{args.crop[1]} crops from {args.samples} samples of {args.size[0]}x{args.size[1]}, "
          f"4 angles x 2 views + disparity, {args.workers} workers, batches of {args.batch}")
    print("| storage | crops/s | vs PNG | size (MiB) |\n|---|---:|---:|---:|")
    for name, rate, mib in rows:
        print(f"| {name} | {rate:.1f} | {rate / png_rate:.2f}x | {mib:.1f} |")


if __name__ == "__main__":
    main()
