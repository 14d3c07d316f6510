"""Is there polarization evidence the correction module can learn from?

The correction can only move a wrong base disparity towards the truth if the two
views' polarization features agree better at the true disparity than at the base's
estimate. This module measures exactly that, per pixel, where the base is wrong:

- for each labeled pixel with ``|base − gt| > min_error``, the feature disagreement
  ``|F(left) − warp(F(right), d)|`` (summed over channels, averaged over a
  ``window × window`` neighbourhood) is computed at ``d = gt`` and at ``d = base``;
- ``agrees_at_gt`` is the share of those pixels where the disagreement is lower at the
  ground truth. 1.0: the features point at the truth everywhere; 0.5: no signal
  (a coin toss); below 0.5: the features prefer the base's wrong answer.

Reported for the polarization features (normalized Stokes, what pol_diff is made of),
for the intensity image S0/2 (what the base matches), and for the polarized part of the
light (unnormalized linear Stokes S1, S2 = DoLP·S0·(cos 2φ, sin 2φ), dominated by
specular reflection at the surface, without the division by S0 that amplifies noise in
dark pixels): on transparent objects the intensity is expected below 0.5 (it shows the
refracted background) and the polarization features above it. A polarization share near
0.5 on transparent pixels means the data carry no signal at the true surface: more
training will not make the correction work.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from polstereo.evaluation.metrics import region_masks
from polstereo.evaluation.samples import iterate_samples
from polstereo.models.warp import warp_disagreement
from polstereo.polar.features import intensity_image, pol_features
from polstereo.polar.stokes import stokes_from_angles

DEFAULT_WINDOW = 9
DEFAULT_MIN_ERROR = 1.0
DEFAULT_OFFSETS = (2.0, 4.0, 8.0)
FEATURES = ("polarization", "intensity", "polarized")


def polarized_part(stack: torch.Tensor, angles_deg: Sequence[float]) -> torch.Tensor:
    """Unnormalized linear Stokes (S1, S2), ``(B, A, C, H, W) -> (B, 2C, H, W)``, channels
    ordered (S1 for each colour, then S2 for each colour); in [−1, 1] for images in [0, 1].
    Unscaled: the shares compare one feature's disagreements with each other, so a scale
    would change nothing."""
    return stokes_from_angles(stack, angles_deg, axis=1)[:, 1:3].flatten(1, 2)


def _disagreement(left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor, window: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Window-averaged ``|left − warp(right, d)|`` ``(B, 1, H, W)`` and the warp validity."""
    cost, valid = warp_disagreement(left, right, disparity)  # non-finite (unknown) disparities: invalid
    weight = valid.to(left.dtype)
    cost = cost * weight
    if window > 1:  # the window's mean over the samples that fell inside the right image
        pool = lambda x: F.avg_pool2d(x, window, stride=1, padding=window // 2)  # noqa: E731
        cost = pool(cost) / pool(weight).clamp_min(1e-6)
    return cost, valid


class _Frame:
    """One sample's features and their disagreement at the ground truth, computed once and
    judged against any number of candidate disparities (the base's, or gt ± δ)."""

    def __init__(self, left: torch.Tensor, right: torch.Tensor, gt: torch.Tensor, angles_deg: Sequence[float],
                 window: int):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {window}")
        self.gt, self.window = gt, window
        self.features = {"polarization": (pol_features(left, angles_deg), pol_features(right, angles_deg)),
                         "intensity": (intensity_image(left, angles_deg), intensity_image(right, angles_deg)),
                         "polarized": (polarized_part(left, angles_deg), polarized_part(right, angles_deg))}
        self.at_gt = {name: _disagreement(fl, fr, gt, window) for name, (fl, fr) in self.features.items()}

    def counts(self, base: torch.Tensor, masks: dict[str, torch.Tensor], min_error: float) -> dict[str, dict[str, int]]:
        base = base.float()
        # pixels the base gets wrong, at a disparity that exists (a negative one does not)
        wrong = torch.isfinite(self.gt) & ((base - torch.nan_to_num(self.gt)).abs() > min_error) & (base >= 0)
        better = {}
        for name, (fl, fr) in self.features.items():
            at_gt, valid_gt = self.at_gt[name]
            at_base, valid_base = _disagreement(fl, fr, base, self.window)
            wrong = wrong & valid_gt & valid_base
            better[name] = at_gt < at_base
        counts = {}
        for region, mask in masks.items():
            m = mask.bool() & wrong
            counts[region] = {"pixels": int(m.sum()), **{name: int((b & m).sum()) for name, b in better.items()}}
        return counts


@torch.no_grad()
def evidence_counts(left: torch.Tensor, right: torch.Tensor, gt: torch.Tensor, base: torch.Tensor,
                    masks: dict[str, torch.Tensor], angles_deg: Sequence[float], window: int = DEFAULT_WINDOW,
                    min_error: float = DEFAULT_MIN_ERROR) -> dict[str, dict[str, int]]:
    """Counts for one batch: ``{region: {"pixels": n, "polarization": k, "intensity": k,
    "polarized": k}}``.

    ``left``/``right``: angle stacks ``(B, A, C, H, W)`` in [0, 1]; ``gt``: ``(B, 1, H, W)``
    with NaN where unknown; ``base``: the base disparity; ``masks``: region masks
    (:func:`polstereo.evaluation.metrics.region_masks`). ``k`` counts the pixels whose
    features agree better at ``gt`` than at ``base`` (ties count as no evidence).
    """
    return _Frame(left, right, gt, angles_deg, window).counts(base, masks, min_error)


def summarize(totals: dict[str, dict[str, int]], window: int = DEFAULT_WINDOW,
              min_error: float = DEFAULT_MIN_ERROR) -> dict:
    """Shares from accumulated counts: ``{region: {"pixels", "polarization", "intensity",
    "polarized"}}``
    (shares in [0, 1], None without pixels), plus the settings used."""
    out: dict = {"window": window, "min_error": min_error}
    for region, c in totals.items():
        n = c["pixels"]
        out[region] = {"pixels": n, **{f: (c[f] / n if n else None) for f in FEATURES}}
    return out


def accumulate(totals: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    """Add one batch's :func:`evidence_counts` into ``totals`` (in place)."""
    for region, c in counts.items():
        t = totals.setdefault(region, {"pixels": 0, **{f: 0 for f in FEATURES}})
        for key, value in c.items():
            t[key] += value


@torch.no_grad()
def dataset_evidence(reader, offsets=DEFAULT_OFFSETS, window: int = DEFAULT_WINDOW,
                     max_samples: int | None = None) -> dict:
    """Model-free evidence of a labeled HDF5 file: for each offset δ, :func:`evidence_counts`
    with ``gt ± δ`` in place of a base prediction (both signs pooled), so the share answers
    "do the features pin the true disparity to within δ px?" before any model is trained.

    Returns ``{"window", "offsets": {δ: {region: {"pixels", "polarization", "intensity",
    "polarized"}}}}``.
    """
    totals: dict[float, dict] = {float(d): {} for d in offsets}
    for batch in iterate_samples(reader, max_samples=max_samples):
        masks = region_masks(batch.valid, batch.transparent)
        frame = _Frame(batch.left, batch.right, batch.disparity, reader.angles_deg, window)
        for delta in totals:
            for sign in (1.0, -1.0):
                accumulate(totals[delta], frame.counts(batch.disparity + sign * delta, masks, 0.5 * delta))
    return {"window": window, "offsets": {d: summarize(t, window, 0.5 * d) for d, t in totals.items()}}


TABLE_HEADER = f"{'region':<12} {'pixels':>9} {'polarization':>13} {'intensity':>10} {'polarized':>10}"


def table_rows(summary: dict) -> list[tuple[str, str]]:
    """``(region, row)`` for each region of a :func:`summarize` result that has pixels,
    the row aligned under :data:`TABLE_HEADER`."""
    rows = []
    for name in ("all", "transparent", "opaque"):
        e = summary.get(name)
        if e and e["pixels"]:
            rows.append((name, f"{name:<12} {e['pixels']:>9d} {e['polarization']:>13.3f} {e['intensity']:>10.3f}"
                                f" {e['polarized']:>10.3f}"))
    return rows


def evidence_line(share: float | None) -> str:
    """A short reading of a share for humans."""
    if share is None:
        return "no pixels"
    if share >= 0.8:
        return "points at the truth"
    if share > 0.6:
        return "weak signal"
    if share >= 0.45:
        return "little or no signal (0.5: coin toss)"
    return "misleads (prefers the base's answer)"


__all__ = ["evidence_counts", "polarized_part", "accumulate", "summarize", "dataset_evidence", "table_rows",
           "TABLE_HEADER",
           "evidence_line", "DEFAULT_WINDOW",
           "DEFAULT_MIN_ERROR", "DEFAULT_OFFSETS", "FEATURES"]
