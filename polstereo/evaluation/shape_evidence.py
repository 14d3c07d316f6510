"""Does the polarization agree with the *shape* of a disparity map? One view, no warp.

Per judged pixel ``cost(d) = sin²(2(φ − α(∇d)))`` (:mod:`polstereo.polar.shape`: φ the
AoLP, α the image-plane azimuth of ∇d, radians, counter-clockwise on screen): 0 where the
shape of ``d`` agrees with the AoLP, exactly 0.5 where ``d`` is flat, 1 at worst. Per region
it reports the DoLP-weighted mean cost over the judged pixels of each candidate disparity
(:data:`CANDIDATES`: ``gt``, ``flat``, ``perturbed``, ``base``, ``final``; px) and, for the
candidates but ``gt`` and ``flat``, ``gt_better_than[c]``: the share of judged pixels with
``|c − gt| > min_error`` px where the ground truth's cost is lower. Which pixels are judged,
and the ``perturbed`` candidate: :class:`ShapeEvidenceConfig`. Definitions and how to
read them: docs/metrics.md#shape-consistency-evidence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from polstereo.errors import PolstereoError
from polstereo.evaluation.samples import iterate_samples
from polstereo.polar.shape import disparity_gradient, gaussian_kernel, hard_consistency, polarization_angles

REFERENCE_CANDIDATES = ("gt", "flat", "perturbed")
MODEL_CANDIDATES = ("base", "final")
CANDIDATES = REFERENCE_CANDIDATES + MODEL_CANDIDATES
UNPAIRED = ("gt", "flat")  # no pairwise share: gt is the reference, flat's cost is 0.5 everywhere
GRADIENT_SUPPORT = 7  # pixels read by one gradient: a 5-tap blur (σ = 1 px), then a 3-tap Sobel


@dataclass(frozen=True)
class ShapeEvidenceConfig:
    """Which pixels are judged, and how the ``perturbed`` candidate is drawn.

    ``min_dolp``: DoLP threshold (the AoLP of weaker polarization is noise);
    ``min_slope``: ground-truth slope threshold, px of disparity per px, in the unit-gain
    Sobel units of :func:`~polstereo.polar.shape.disparity_gradient` (0.05 / 8: the
    reference probe's 0.05 in OpenCV's unnormalized Sobel units); ``erode``: odd size of the
    square erosion of each region; ``min_error``: px a candidate must be off to enter the
    pairwise share; ``perturb_px``/``perturb_sigma``: RMS (px) and smoothness (Gaussian σ,
    px) of the ``perturbed`` offset field; ``seed``: its random seed (sample i uses seed + i).
    """

    min_dolp: float = 0.01
    min_slope: float = 0.05 / 8
    erode: int = 5
    min_error: float = 1.0
    perturb_px: float = 2.0
    perturb_sigma: float = 8.0
    seed: int = 0

    def validated(self) -> "ShapeEvidenceConfig":
        if self.erode < 1 or self.erode % 2 == 0:
            raise PolstereoError(f"shape evidence: erode must be a positive odd number, got {self.erode}")
        if self.perturb_sigma <= 0 or self.perturb_px < 0:
            raise PolstereoError(f"shape evidence: perturb_sigma must be > 0 and perturb_px >= 0, got "
                                 f"{self.perturb_sigma} and {self.perturb_px}")
        return self


# ---------------------------------------------------------------------------- pure functions
def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 1, H, W)`` bool -> bool: True where the whole ``size × size`` neighbourhood is
    True (outside the image counts as True, as OpenCV's default erosion)."""
    if size <= 1:
        return mask.bool()
    outside = F.max_pool2d((~mask.bool()).float(), size, stride=1, padding=size // 2)
    return outside == 0


def smooth_offset(shape: Sequence[int], rms_px: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random offset field ``shape`` = ``(B, 1, H, W)`` (float32, CPU): white noise
    blurred with a Gaussian of ``sigma`` px, scaled to an RMS of ``rms_px`` px. The noise
    extends beyond the image by the kernel's radius, so the border is as smooth as the rest."""
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    b, c, h, w = shape
    noise = torch.randn((b, c, h + 2 * r, w + 2 * r), generator=generator)
    field = F.conv2d(F.conv2d(noise, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return field * (rms_px / field.pow(2).mean().sqrt().clamp_min(1e-12))


def reference_candidates(gt: torch.Tensor, config: ShapeEvidenceConfig, index: int = 0) -> dict[str, torch.Tensor]:
    """The model-free candidates ``{"flat", "perturbed"}`` for a ground truth ``(B, 1, H, W)``
    (px, NaN where unknown); ``index`` (the sample's) seeds the perturbation."""
    labeled = torch.isfinite(gt)
    filled = torch.where(labeled, gt, torch.zeros_like(gt))
    mean = filled.sum() / labeled.sum().clamp_min(1)
    generator = torch.Generator().manual_seed(config.seed + index)
    offset = smooth_offset(gt.shape, config.perturb_px, config.perturb_sigma, generator).to(gt)
    return {"flat": torch.full_like(gt, float(mean)), "perturbed": gt + offset}


def _judged(region: torch.Tensor, labeled: torch.Tensor, dolp: torch.Tensor, slope: torch.Tensor,
            config: ShapeEvidenceConfig) -> torch.Tensor:
    inside = erode(region & labeled, config.erode) & erode(labeled, GRADIENT_SUPPORT)
    return inside & (dolp > config.min_dolp) & (slope > config.min_slope)


@torch.no_grad()
def shape_evidence_counts(stack: torch.Tensor, gt: torch.Tensor, regions: dict[str, torch.Tensor],
                          candidates: dict[str, torch.Tensor], angles_deg: Sequence[float],
                          config: ShapeEvidenceConfig = ShapeEvidenceConfig()) -> dict[str, dict]:
    """Sums for one batch: ``{region: {"pixels", "weight", "cost": {c: Σ DoLP·cost},
    "compared": {c: n}, "gt_better": {c: k}}}``.

    ``stack``: the LEFT angle stack ``(B, A, C, H, W)`` in [0, 1]; ``gt``: ``(B, 1, H, W)``
    px, NaN where unknown; ``regions``: bool masks ``(B, 1, H, W)`` (labeled or not: only
    labeled pixels count); ``candidates``: disparities ``(B, 1, H, W)`` px other than
    ``gt`` (e.g. :func:`reference_candidates` and a model's ``base``). ``cost`` sums the
    DoLP-weighted :func:`~polstereo.polar.shape.hard_consistency` over the judged pixels
    (0.5 where a candidate is numerically flat),
    ``weight`` the DoLP; ``compared`` and ``gt_better`` are the pairwise counts.
    """
    dolp, cos2, sin2 = polarization_angles(stack.float(), angles_deg)
    gt = gt.float()
    labeled = torch.isfinite(gt)
    gt_filled = torch.where(labeled, gt, torch.zeros_like(gt))  # never read by a judged pixel's gradient
    gradient = disparity_gradient(gt_filled)
    slope = gradient.norm(dim=1, keepdim=True)
    costs = {"gt": hard_consistency(gradient, cos2, sin2)}
    for name, d in candidates.items():
        costs[name] = hard_consistency(disparity_gradient(torch.nan_to_num(d.float())), cos2, sin2)
    out = {}
    for region, mask in regions.items():
        judged = _judged(mask.bool(), labeled, dolp, slope, config)
        weight = torch.where(judged, dolp, torch.zeros_like(dolp)).double()
        entry = {"pixels": int(judged.sum()), "weight": float(weight.sum()),
                 "cost": {name: float((c.double() * weight).sum()) for name, c in costs.items()},
                 "compared": {}, "gt_better": {}}
        for name, d in candidates.items():
            if name in UNPAIRED:
                continue
            off = judged & ((d.float() - gt_filled).abs() > config.min_error)
            entry["compared"][name] = int(off.sum())
            entry["gt_better"][name] = int((off & (costs["gt"] < costs[name])).sum())
        out[region] = entry
    return out


def shape_regions(valid: torch.Tensor, transparent: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{"transparent", "opaque"}`` masks, or ``{"all"}`` without a transparency mask."""
    valid = valid.bool()
    if transparent is None:
        return {"all": valid}
    transparent = transparent.bool()
    return {"transparent": valid & transparent, "opaque": valid & ~transparent}


def sample_counts(batch, angles_deg: Sequence[float], config: ShapeEvidenceConfig = ShapeEvidenceConfig(),
                  outputs: dict[str, torch.Tensor] | None = None) -> dict[str, dict]:
    """:func:`shape_evidence_counts` of one :class:`~polstereo.evaluation.evaluate.Batch`
    for the reference candidates plus a model's ``outputs`` (``{"base": ..., "final": ...}``,
    ``(1, 1, H, W)`` px), in the regions of :func:`shape_regions`."""
    candidates = {**reference_candidates(batch.disparity, config, batch.index), **(outputs or {})}
    return shape_evidence_counts(batch.left, batch.disparity, shape_regions(batch.valid, batch.transparent),
                                 candidates, angles_deg, config)


def accumulate(totals: dict[str, dict], counts: dict[str, dict]) -> None:
    """Add one batch's :func:`shape_evidence_counts` into ``totals`` (in place)."""
    for region, c in counts.items():
        t = totals.setdefault(region, {"pixels": 0, "weight": 0.0, "cost": {}, "compared": {}, "gt_better": {}})
        t["pixels"] += c["pixels"]
        t["weight"] += c["weight"]
        for key in ("cost", "compared", "gt_better"):
            for name, value in c[key].items():
                t[key][name] = t[key].get(name, 0) + value


def summarize(totals: dict[str, dict], config: ShapeEvidenceConfig = ShapeEvidenceConfig()) -> dict:
    """Means and shares from accumulated sums, plus the settings used:
    ``{settings..., "candidates": [...], region: {"pixels", "cost": {c: mean in [0, 1]},
    "gt_better_than": {c: share}, "compared_pixels": {c: n}}}`` (None without pixels)."""
    out: dict = dataclasses.asdict(config)
    names: list[str] = []
    for region, t in totals.items():
        names += [n for n in t["cost"] if n not in names]
        w = t["weight"]
        out[region] = {"pixels": t["pixels"],
                       "cost": {n: (v / w if w > 0 else None) for n, v in t["cost"].items()},
                       "gt_better_than": {n: (t["gt_better"][n] / m if m else None) for n, m in t["compared"].items()},
                       "compared_pixels": dict(t["compared"])}
    out["candidates"] = [n for n in CANDIDATES if n in names]
    return out


@torch.no_grad()
def dataset_shape_evidence(reader, config: ShapeEvidenceConfig = ShapeEvidenceConfig(),
                           max_samples: int | None = None) -> dict:
    """Model-free shape evidence of a labeled HDF5 file: ``gt``, ``flat`` and ``perturbed``
    judged on the first ``max_samples`` labeled samples; a :func:`summarize` result."""

    config = config.validated()
    totals: dict[str, dict] = {}
    for batch in iterate_samples(reader, max_samples=max_samples):
        accumulate(totals, sample_counts(batch, reader.angles_deg, config))
    return summarize(totals, config)


# ---------------------------------------------------------------------------- tables
def table_header(summary: dict) -> str:
    """Column titles for :func:`table_rows`: pixels, mean cost per candidate, then the
    pairwise shares ``gt<c``."""
    names = summary.get("candidates", [])
    paired = [n for n in names if n not in UNPAIRED]
    return (f"{'region':<12} {'pixels':>9} " + " ".join(f"{n:>9}" for n in names)
            + "".join(f" {'gt<' + n:>12}" for n in paired))


def table_rows(summary: dict) -> list[tuple[str, str]]:
    """``(region, row)`` for each region of a :func:`summarize` result that has judged
    pixels, aligned under :func:`table_header` ("-" where a value is undefined)."""
    names = summary.get("candidates", [])
    paired = [n for n in names if n not in UNPAIRED]
    fmt = lambda v, width: f"{'-':>{width}}" if v is None else f"{v:>{width}.3f}"  # noqa: E731
    rows = []
    for region in ("all", "transparent", "opaque"):
        e = summary.get(region)
        if e and e["pixels"]:
            row = f"{region:<12} {e['pixels']:>9d} " + " ".join(fmt(e["cost"].get(n), 9) for n in names)
            row += "".join(" " + fmt(e["gt_better_than"].get(n), 12) for n in paired)
            rows.append((region, row))
    return rows


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a :func:`summarize` result: what is measured, the table."""
    rows = table_rows(summary)
    if not rows:
        return ["shape evidence: no pixels to judge (none with DoLP > "
                f"{summary.get('min_dolp', 0):g} and a sloped ground truth)"]
    lines = ["shape evidence (one view, no warp): DoLP-weighted mean of sin²(2(AoLP − azimuth of ∇d)); "
             "0 = the shape agrees with the AoLP, 0.5 = no agreement",
             f"  over {summary['erode']}x{summary['erode']}-eroded pixels with DoLP > {summary['min_dolp']:g} and "
             f"|∇gt| > {summary['min_slope']:g} px/px; perturbed = gt + smooth noise "
             f"({summary['perturb_px']:g} px RMS, σ {summary['perturb_sigma']:g} px)",
             f"  gt<c: where c is off by > {summary['min_error']:g} px, the share of pixels whose AoLP prefers "
             "the true shape (0.5 = no signal)",
             "  " + table_header(summary)]
    return lines + ["  " + row for _, row in rows]


__all__ = ["ShapeEvidenceConfig", "erode", "smooth_offset", "reference_candidates", "shape_evidence_counts",
           "shape_regions", "sample_counts", "accumulate", "summarize", "dataset_shape_evidence", "table_header",
           "table_rows", "summary_lines", "CANDIDATES", "REFERENCE_CANDIDATES", "MODEL_CANDIDATES"]
