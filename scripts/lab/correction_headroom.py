"""How much could a bounded correction gain on transparent pixels, and does polarization find it?

    python scripts/lab/correction_headroom.py CKPT --data TEST.h5 [--max-correction 10] [--max-samples N]

For the base model of CKPT on the labeled samples of TEST.h5, transparent-pixel EPE of:

- ``base``: the base disparity alone;
- ``oracle per pixel``: base + clip(gt − base, ±max_correction), the best any bounded
  correction can do;
- ``oracle per object``: one clipped offset per connected transparent region (its median
  gt − base), what a correction that only knew each object's depth could do;
- ``winner-take-all (polarization | intensity)``: base + the offset in
  [−max_correction, +max_correction] (1 px steps) whose 9×9 mean feature disagreement
  |F(left) − warp(F(right), base + k)| is smallest: what matching the features near the
  base estimate finds without learning.

A research diagnostic for docs/notebook/2026-11-23-polarization-evidence.md, not a test.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from polstereo.data.h5 import H5Reader
from polstereo.errors import PolstereoError
from polstereo.evaluation.samples import iterate_samples
from polstereo.models.warp import offset_candidates, warp_disagreement_candidates
from polstereo.polar.features import intensity_image, pol_features
from polstereo.training.checkpoint import load_for_inference


def wta_offsets(fl: torch.Tensor, fr: torch.Tensor, base: torch.Tensor, offsets: torch.Tensor,
                window: int = 9) -> torch.Tensor:
    """Per pixel, the offset of ``offsets`` with the lowest window-mean disagreement."""
    candidates = offset_candidates(base, offsets.tolist())
    c, valid = warp_disagreement_candidates(fl, fr, candidates)
    c = F.avg_pool2d(c, window, 1, window // 2, count_include_pad=False)
    # negative disparities and warps leaving the image are no candidates; k = 0 always is
    ok = (valid & (candidates >= 0)) | (offsets == 0).view(1, -1, 1, 1)
    costs = torch.where(ok, c, torch.full_like(c, float("inf")))
    return offsets[costs.argmin(1, keepdim=True)]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-correction", type=float, default=10.0)
    parser.add_argument("--max-samples", type=int, default=None)
    args = parser.parse_args()
    model, _ = load_for_inference(args.checkpoint)
    model.eval()
    reader = H5Reader(args.data)
    bound = args.max_correction
    offsets = torch.arange(-bound, bound + 0.5, 1.0)
    names = ("base", "oracle per pixel", "oracle per object", "winner-take-all polarization",
             "winner-take-all intensity")
    sums = dict.fromkeys(names, 0.0)
    pixels = 0
    for batch in iterate_samples(reader, max_samples=args.max_samples):
        if batch.transparent is None:
            continue
        base = model(batch.left, batch.right, angles_deg=reader.angles_deg)["base_disparity"].float()
        gt = batch.disparity
        mask = batch.transparent.bool() & torch.isfinite(gt)
        if not mask.any():
            continue
        g = torch.nan_to_num(gt)
        per_object = base.clone()
        labels = cv2.connectedComponents(batch.transparent[0, 0].cpu().numpy().astype(np.uint8))[1]
        labels = torch.from_numpy(labels)[None, None]
        for lab in labels.unique().tolist():
            region = mask & (labels == lab)
            if lab == 0 or not region.any():
                continue
            per_object[region] += (g[region] - base[region]).median().clamp(-bound, bound)
        estimates = {
            "base": base,
            "oracle per pixel": base + (g - base).clamp(-bound, bound),
            "oracle per object": per_object,
            "winner-take-all polarization": base + wta_offsets(
                pol_features(batch.left, reader.angles_deg), pol_features(batch.right, reader.angles_deg),
                base, offsets),
            "winner-take-all intensity": base + wta_offsets(
                intensity_image(batch.left, reader.angles_deg), intensity_image(batch.right, reader.angles_deg),
                base, offsets),
        }
        for name, estimate in estimates.items():
            sums[name] += float((estimate - g).abs()[mask].sum())
        pixels += int(mask.sum())
    if pixels == 0:
        raise SystemExit("no labeled transparent pixels in --data")
    base_epe = sums["base"] / pixels
    print(f"transparent pixels: {pixels}; max_correction {bound:g} px")
    print("| estimate | transparent EPE (px) | vs base |\n|---|---:|---:|")
    for name in names:
        epe = sums[name] / pixels
        print(f"| {name} | {epe:.3f} | {100 * (epe / base_epe - 1):+.1f} % |")


if __name__ == "__main__":
    try:
        main()
    except PolstereoError as err:
        raise SystemExit(f"Error: {err}") from None
