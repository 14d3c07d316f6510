"""Write "captured" raw polarization-sensor pairs for the infer demo (sample_data/captured/).

Each pair is rendered by the procedural generator and sampled into the raw image a Sony
IMX250MZR sensor would record (12-bit data in 16-bit PNGs), with a calibration file
(K and baseline) for depth and point clouds, and the ground-truth disparity for reference.
Usage: python scripts/make_captures.py OUT_DIR [--num 3 --size 320 256 --seed 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_sample, sample_rng
from polstereo.io.atomic import atomic_path
from polstereo.io.images import write_disparity, write_image
from polstereo.polar.mosaic import mosaic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--num", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 256), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    config = SyntheticConfig(width=args.size[0], height=args.size[1], bit_depth=12, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.num):
        sample = generate_sample(config, sample_rng(config.seed, i), name=f"scene{i}")
        for view in ("left", "right"):
            write_image(args.out / f"scene{i}_{view}.png", mosaic(getattr(sample, view)))
        write_disparity(args.out / f"scene{i}_gt_disparity.pfm", sample.disparity)
    w, h = config.width, config.height
    calib = {"K": [[config.focal, 0.0, (w - 1) / 2], [0.0, config.focal, (h - 1) / 2], [0.0, 0.0, 1.0]],
             "baseline": config.baseline_m}
    with atomic_path(args.out / "calib.json") as tmp:
        tmp.write_text(json.dumps(calib, indent=2) + "\n")


if __name__ == "__main__":
    main()
