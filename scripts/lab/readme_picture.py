"""Redraw docs/images/demo.png, the README's picture of what `make demo` shows.

    python scripts/lab/readme_picture.py [--model models/polstereo-small.ckpt] [--demo-out demo_out]

Top row, on sample_data/test.h5 sample 0: left intensity (S0/2), ground truth, the model's
disparity (same colour range as the ground truth), |error| (0–5 px). Bottom row, on the
first raw-mosaic capture as `make demo` inferred it with the shipped model
(DEMO_OUT/pred_shipped/scene0): AoLP as hue with DoLP as brightness, disparity, correction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from polstereo.data.h5 import H5Reader
from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path
from polstereo.io.visualise import comparison_pictures, image_to_rgb
from polstereo.models.files import load_model
from polstereo.polar.features import intensity_image

ROOT = Path(__file__).resolve().parents[2]


def row(images: list[np.ndarray], width: int) -> np.ndarray:
    """RGB images side by side, each resized to the same height, the row to ``width``."""
    h = images[0].shape[0]
    images = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h), interpolation=cv2.INTER_AREA) for im in images]
    strip = np.concatenate(images, axis=1)
    return cv2.resize(strip, (width, round(strip.shape[0] * width / strip.shape[1])), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "polstereo-small.ckpt"))
    parser.add_argument("--demo-out", default=str(ROOT / "demo_out"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "demo.png"))
    args = parser.parse_args()
    model, _ = load_model(args.model)
    sample = H5Reader(ROOT / "sample_data" / "test.h5").read(0)
    left, right = torch.from_numpy(sample.left)[None], torch.from_numpy(sample.right)[None]
    with torch.no_grad():
        pred = model.eval()(left, right)["disparity"][0, 0].numpy()
    gt = np.where(sample.valid_mask(), sample.disparity, np.nan)
    pred_rgb, gt_rgb, error_rgb = comparison_pictures(pred, gt)
    top = [image_to_rgb(intensity_image(left)[0].numpy()), gt_rgb, pred_rgb, error_rgb]
    scene = Path(args.demo_out) / "pred_shipped" / "scene0"
    bottom = []
    for name in ("aolp_dolp.png", "disparity_color.png", "correction_color.png"):
        image = cv2.imread(str(scene / name)) if (scene / name).is_file() else None
        if image is None:
            raise PolstereoError(f"{scene / name} not found: run `make demo` first (or give --demo-out)")
        bottom.append(image[..., ::-1])
    width = 640
    picture = np.concatenate([row(top, width), row(bottom, width)], axis=0)
    with atomic_path(args.out) as tmp:
        cv2.imwrite(str(tmp), np.ascontiguousarray(picture[..., ::-1]))
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")


if __name__ == "__main__":
    try:
        main()
    except PolstereoError as err:
        raise SystemExit(f"Error: {err}") from None
