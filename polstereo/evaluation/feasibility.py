"""Is stage B feasible? The base error against the correction bound, and the evidence.

A correction bounded by ``max_correction`` can only fix pixels whose base error is
within it. ``polstereo check-feasibility`` and the trainer's gate before stage B both
measure with :func:`base_error_statistics`, decide with :func:`feasibility_verdict` and
word a refusal with :func:`infeasible_reason`. The one check of a bound's value is
:func:`polstereo.models.full.check_bound` (the model owns its bound).
"""

from __future__ import annotations

import numpy as np
import torch

from polstereo.data.h5.reader import H5Reader
from polstereo.errors import PolstereoError
from polstereo.evaluation import shape_evidence
from polstereo.evaluation.evidence import accumulate as accumulate_evidence
from polstereo.evaluation.evidence import evidence_counts
from polstereo.evaluation.evidence import summarize as summarize_evidence
from polstereo.evaluation.metrics import region_masks
from polstereo.evaluation.samples import iterate_samples
from polstereo.models.full import DEFAULT_MAX_CORRECTION

FEASIBILITY_STATISTICS = ("mean", "median", "p90")


@torch.no_grad()
def base_error_statistics(model, reader: H5Reader, device: torch.device | str = "cpu",
                          max_correction: float = DEFAULT_MAX_CORRECTION, iters: int | None = None,
                          max_samples: int | None = None) -> dict:
    """Absolute error of the base model per region: mean, median, p90, share within bound.

    The numbers the feasibility criterion compares with ``max_correction``: a correction
    bounded by ``max_correction`` can only fix pixels whose base error is within it.
    Also the tanh saturation fraction when the model has a correction module, and whether
    the polarization features point at the true disparity where the base is wrong
    (:mod:`polstereo.evaluation.evidence`), under ``"evidence"``, and whether the AoLP
    agrees with the shape of the true disparity better than with the base's
    (:mod:`polstereo.evaluation.shape_evidence`), under ``"shape_evidence"``.
    """
    errors: dict[str, list[np.ndarray]] = {"all": [], "transparent": [], "opaque": []}
    evidence_totals: dict[str, dict[str, int]] = {}
    shape_totals: dict[str, dict] = {}
    shape_config = shape_evidence.ShapeEvidenceConfig()
    saturation = []
    was_training = model.training
    model.eval()
    try:
        for batch in iterate_samples(reader, device, max_samples):
            out = model(batch.left, batch.right, angles_deg=reader.angles_deg, iters=iters, warp_source="pred")
            err = (out["base_disparity"].float() - batch.disparity).abs()
            masks = region_masks(batch.valid, batch.transparent)
            for region, mask in masks.items():
                errors[region].append(err[mask].cpu().numpy())
            if out.get("saturation_fraction") is not None:
                saturation.append(float(out["saturation_fraction"]))
            accumulate_evidence(evidence_totals, evidence_counts(
                batch.left, batch.right, batch.disparity, out["base_disparity"], masks, reader.angles_deg))
            outputs = {"base": out["base_disparity"]}
            if getattr(model, "correction", None) is not None:
                outputs["final"] = out["disparity"]
            shape_evidence.accumulate(shape_totals, shape_evidence.sample_counts(
                batch, reader.angles_deg, shape_config, outputs))
    finally:
        model.train(was_training)
    result = {}
    for region, parts in errors.items():
        values = np.concatenate(parts) if parts else np.zeros(0)
        result[region] = {"pixels": int(values.size)} if values.size == 0 else {
            "pixels": int(values.size),
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)),
            "within_max_correction": float((values <= max_correction).mean()),
        }
    if result["all"]["pixels"] == 0:
        raise PolstereoError(f"{reader.path}: no labeled pixels to measure the base error on")
    result["saturation_fraction"] = float(np.mean(saturation)) if saturation else None
    result["evidence"] = summarize_evidence(evidence_totals)
    result["shape_evidence"] = shape_evidence.summarize(shape_totals, shape_config)
    return result


def feasibility_verdict(stats: dict, max_correction: float, statistic: str = "mean",
                        region: str = "transparent") -> tuple[bool, float, str]:
    """``(feasible, value, region_used)``: is the base error ``statistic`` <= max_correction?

    Falls back to all pixels when the data have no transparent pixels.
    """
    if statistic not in FEASIBILITY_STATISTICS:
        raise PolstereoError(f"unknown feasibility statistic {statistic!r}; use one of {FEASIBILITY_STATISTICS}")
    used = region if stats.get(region, {}).get("pixels") else "all"
    value = stats[used][statistic]
    return value <= max_correction, value, used


def infeasible_reason(statistic: str, region: str, value: float, max_correction: float) -> str:
    """Why a start is infeasible, in the words both the command and the gate use."""
    return (f"base {statistic} error on {region} pixels is {value:.2f} px > max_correction {max_correction:g} px; "
            "run more stage A (adapt) or raise --max-correction")
