"""Draw docs/images/glass_kinds.png: one generated scene per glass kind of make-synthetic.

    python scripts/lab/glass_kinds_picture.py [--out docs/images/glass_kinds.png] [--size 320 256]

One row per kind (solid, thin, pane: each scene has only that kind of glass), four
pictures per row: the left view's intensity (S0/2), its AoLP as hue with DoLP as
brightness (DoLP x 3, clipped), the ground-truth disparity and the transparency mask.
Scenes come from ``random_scene`` with a fixed seed, so the picture is reproducible.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from polstereo.data.synthetic.config import GLASS_KINDS, SyntheticConfig
from polstereo.data.synthetic.generate import sample_rng
from polstereo.data.synthetic.render import render_pair
from polstereo.data.synthetic.scene import random_scene
from polstereo.io.atomic import atomic_path
from polstereo.io.visualise import aolp_to_rgb, disparity_to_rgb, unit_to_gray
from polstereo.polar.stokes import aolp, dolp

ROOT = Path(__file__).resolve().parents[2]
SCENES = {"solid": 4, "thin": 1, "pane": 2}  # sample indices (seed 21) that show each kind well


def kind_row(config: SyntheticConfig, kind: str) -> np.ndarray:
    config = dataclasses.replace(config, glass=(kind,), transparent=(2, 2))
    pair = render_pair(random_scene(config, sample_rng(config.seed, SCENES[kind])))
    stokes = pair.left.stokes[:, 0].astype(np.float64)
    s0 = stokes[0] / np.percentile(stokes[0], 99)
    gray = np.repeat(unit_to_gray(np.clip(s0, 0, 1))[..., None], 3, axis=-1)
    polarization = aolp_to_rgb(aolp(stokes), np.clip(3 * dolp(stokes), 0, 1))
    d_hi = config.disparity_range[1]
    disparity = disparity_to_rgb(pair.disparity, 0.0, d_hi)
    mask = np.repeat((pair.transparent * 255).astype(np.uint8)[..., None], 3, axis=-1)
    row = np.concatenate([gray, polarization, disparity, mask], axis=1)
    cv2.putText(row, kind, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2, cv2.LINE_AA)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "glass_kinds.png")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 256), metavar=("W", "H"))
    args = parser.parse_args()
    config = SyntheticConfig(width=args.size[0], height=args.size[1], textures="procedural", noise=False,
                             seed=21).validated()
    picture = np.concatenate([kind_row(config, kind) for kind in GLASS_KINDS], axis=0)
    with atomic_path(args.out) as tmp:
        if not cv2.imwrite(str(tmp.with_suffix(".png")), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
            raise SystemExit(f"cannot write {args.out}")
        tmp.with_suffix(".png").replace(tmp)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
