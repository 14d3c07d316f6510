"""Disparity error metrics, one definition for all of polstereo (docs/metrics.md).

For predicted ``p`` and ground truth ``g`` (pixels) and error ``e = |p − g|`` over the
valid pixels of a region:

=============  ==============================================  ======================
name           definition                                      direction
=============  ==============================================  ======================
``epe``        mean e  (a.k.a. MAE)                            lower is better
``rmse``       sqrt(mean e²)                                   lower is better
``bad1/2/3``   100 · share of e > 1 / 2 / 3 px                 lower is better
``acc1/3/5``   100 · share of e < 1 / 3 / 5 px                 higher is better
``relepe``     mean e / g over pixels with g > 0               lower is better
``d1``         100 · share of (e > 3 px and e > 0.05 · g)      lower is better
=============  ==============================================  ======================

Regions: ``all`` valid pixels, ``transparent`` (valid and transparent), ``opaque``
(valid and not transparent). Dataset values are pixel-weighted (every valid pixel of
every sample counts once); per-sample values are kept alongside.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

REGIONS = ("all", "transparent", "opaque")
BAD_THRESHOLDS = (1.0, 2.0, 3.0)
ACC_THRESHOLDS = (1.0, 3.0, 5.0)
METRIC_NAMES = ("epe", "rmse", "bad1", "bad2", "bad3", "acc1", "acc3", "acc5", "relepe", "d1")
# the order of the running sums per region
_SUMS = ("count", "abs", "sq", "bad1", "bad2", "bad3", "acc1", "acc3", "acc5", "rel", "rel_count", "d1")


def region_masks(valid: torch.Tensor, transparent: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{region: bool mask}``; without a transparency mask only ``all`` is defined."""
    valid = valid.bool()
    if transparent is None:
        return {"all": valid}
    transparent = transparent.bool()
    return {"all": valid, "transparent": valid & transparent, "opaque": valid & ~transparent}


def error_sums(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample running sums ``(B, len(_SUMS))`` in float64 for one region.

    ``pred``, ``gt``, ``mask``: ``(B, 1, H, W)``; non-finite ``gt`` is never counted.
    """
    pred, gt = pred.detach().double(), gt.detach().double()
    mask = mask.bool() & torch.isfinite(gt)
    gt = torch.where(mask, gt, torch.zeros_like(gt))
    err = torch.where(mask, (pred - gt).abs(), torch.zeros_like(gt))
    m = mask.double()
    positive = mask & (gt > 0)
    flat = lambda t: t.flatten(1).sum(1)  # noqa: E731
    cols = [flat(m), flat(err), flat(err * err)]
    cols += [flat(((err > t) & mask).double()) for t in BAD_THRESHOLDS]
    cols += [flat(((err < t) & mask).double()) for t in ACC_THRESHOLDS]
    cols += [flat(torch.where(positive, err / gt.clamp_min(1e-12), torch.zeros_like(gt))), flat(positive.double())]
    cols += [flat(((err > 3.0) & (err > 0.05 * gt) & mask).double())]
    return torch.stack(cols, dim=1)


def metrics_from_sums(sums: Iterable[float]) -> dict[str, float | int]:
    """Turn one region's running sums into the metric values (NaN where undefined)."""
    s = dict(zip(_SUMS, (float(v) for v in sums)))
    n = s["count"]
    if n == 0:
        return {"pixels": 0, **{name: math.nan for name in METRIC_NAMES}}
    pct = lambda key: 100.0 * s[key] / n  # noqa: E731
    return {
        "pixels": int(n),
        "epe": s["abs"] / n,
        "rmse": math.sqrt(s["sq"] / n),
        "bad1": pct("bad1"), "bad2": pct("bad2"), "bad3": pct("bad3"),
        "acc1": pct("acc1"), "acc3": pct("acc3"), "acc5": pct("acc5"),
        "relepe": s["rel"] / s["rel_count"] if s["rel_count"] else math.nan,
        "d1": pct("d1"),
    }


class MetricAccumulator:
    """Pixel-weighted metrics per region over a dataset, plus per-sample values.

    ``update`` takes a batch; ``result()`` gives ``{region: {metric: value}}``;
    ``per_sample`` lists ``{region: {metric: value}}`` per sample in update order.
    ``sums`` can be all-reduced across processes before ``result()``.
    """

    def __init__(self, keep_per_sample: bool = True):
        self.sums = {region: torch.zeros(len(_SUMS), dtype=torch.float64) for region in REGIONS}
        self.keep_per_sample = keep_per_sample
        self.per_sample: list[dict[str, dict]] = []

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
               transparent: torch.Tensor | None = None) -> None:
        masks = region_masks(valid, transparent)
        batch = {region: error_sums(pred, gt, mask).cpu() for region, mask in masks.items()}
        for region, rows in batch.items():
            self.sums[region] += rows.sum(0)
        if self.keep_per_sample:
            for b in range(pred.shape[0]):
                self.per_sample.append({region: metrics_from_sums(rows[b]) for region, rows in batch.items()})

    def result(self) -> dict[str, dict[str, float | int]]:
        return {region: metrics_from_sums(sums) for region, sums in self.sums.items()}
