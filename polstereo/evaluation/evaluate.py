"""Run a model over a polstereo HDF5 file and measure it.

One loop serves training validation, ``polstereo eval`` and ``check-feasibility``:
every sample is run at full resolution, and the base-only and the final (base +
correction) disparities are scored with :mod:`polstereo.evaluation.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from polstereo.data.h5format import H5Reader
from polstereo.errors import PolstereoError
from polstereo.evaluation import shape_evidence
from polstereo.evaluation.evidence import accumulate as accumulate_evidence
from polstereo.evaluation.evidence import evidence_counts
from polstereo.evaluation.evidence import summarize as summarize_evidence
from polstereo.evaluation.metrics import MetricAccumulator, region_masks
from polstereo.polar.color import to_channels


@dataclass
class Batch:
    """One full-resolution sample as tensors on ``device`` (batch of 1)."""

    index: int
    name: str
    left: torch.Tensor         # (1, A, C, H, W)
    right: torch.Tensor
    disparity: torch.Tensor    # (1, 1, H, W), NaN where invalid
    valid: torch.Tensor        # (1, 1, H, W) bool
    transparent: torch.Tensor | None
    polarized: bool = True     # False: ordinary pair, left/right are (1, C, H, W) images


def iterate_samples(reader: H5Reader, device: torch.device | str = "cpu", max_samples: int | None = None,
                    require_disparity: bool = True, shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
    """Full-resolution samples of ``reader`` (labeled ones only when ``require_disparity``).

    ``shard=(rank, world)`` yields every ``world``-th of them, starting at ``rank``.
    """
    count = 0
    rank, world = shard
    for i in range(len(reader)):
        if max_samples is not None and count >= max_samples:
            return
        if require_disparity and not reader.has(i, "disparity"):
            continue
        count += 1
        if (count - 1) % world != rank:
            continue
        s = reader.read(i)
        h, w = s.shape
        disp = s.disparity if s.disparity is not None else np.full((h, w), np.nan, np.float32)
        valid = s.valid_mask() if s.disparity is not None else np.zeros((h, w), bool)
        disp = np.where(valid, disp, np.nan).astype(np.float32)
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None].to(device)  # noqa: E731
        yield Batch(index=i, name=s.name, left=as_t(s.left), right=as_t(s.right), disparity=as_t(disp[None]),
                    valid=as_t(valid[None]), transparent=None if s.transparent is None else as_t(s.transparent[None]))


@dataclass
class EvalResult:
    """Metrics of the final and base-only disparities, and the correction's saturation."""

    final: dict
    base: dict
    saturation_fraction: float | None
    samples: int
    per_sample: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"samples": self.samples, "final": self.final, "base": self.base,
                "saturation_fraction": self.saturation_fraction, "per_sample": self.per_sample}


@torch.no_grad()
def evaluate_model(model, reader, device: torch.device | str = "cpu", iters: int | None = None,
                   warp_source: str = "pred", max_samples: int | None = None,
                   on_sample: Callable[[Batch, dict], None] | None = None,
                   autocast_dtype: torch.dtype | None = None, shard: tuple[int, int] = (0, 1),
                   reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Score ``model`` on every labeled sample of ``reader``.

    ``reader`` is an :class:`H5Reader` or an ordinary-pair folder (anything with a
    ``batches(device, max_samples, shard)`` method); ordinary pairs run the base alone.

    ``warp_source`` is ``"pred"`` (inference behaviour) or ``"gt"`` (stage B's view).
    ``on_sample(batch, outputs)`` sees each sample's outputs (for pictures, logs).
    Under DDP, ``shard=(rank, world)`` splits the samples and ``reduce`` sums the
    running totals over ranks (per-sample values stay local).
    """
    was_training = model.training
    model.eval()
    final, base = MetricAccumulator(), MetricAccumulator()
    saturation, saturated_samples, count = 0.0, 0, 0
    names, bad_names, bad_data = [], [], []
    device = torch.device(device)
    correction = getattr(model, "correction", None)
    channels = None if correction is None else correction.config.color_channels
    try:
        batches = (reader.batches(device, max_samples, shard) if hasattr(reader, "batches")
                   else iterate_samples(reader, device, max_samples, shard=shard))
        for batch in batches:
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                if batch.polarized:
                    # a mono correction module on RGB data sees their luminance (as infer does)
                    left, right = (x if channels is None else to_channels(x, channels, axis=2)
                                   for x in (batch.left, batch.right))
                    out = model(left, right, angles_deg=reader.angles_deg, iters=iters,
                                gt_disparity=batch.disparity if warp_source == "gt" else None,
                                warp_source=warp_source)
                else:
                    out = dict(model.forward_intensity(batch.left, batch.right, iters=iters))
                    out["base_disparity"] = out["disparity"]
            pred, base_pred = out["disparity"].float(), out["base_disparity"].float()
            if not torch.isfinite(pred).all():
                # counted, not raised here: under DDP every rank must reach the reduction below
                bad_names.append(batch.name)
                if not (torch.isfinite(batch.left).all() and torch.isfinite(batch.right).all()):
                    bad_data.append(batch.name)  # NaN in, NaN out: the data's fault, not the model's
                continue
            final.update(pred, batch.disparity, batch.valid, batch.transparent)
            base.update(base_pred, batch.disparity, batch.valid, batch.transparent)
            if out.get("saturation_fraction") is not None:
                saturation += float(out["saturation_fraction"])
                saturated_samples += 1
            count += 1
            names.append(batch.name)
            if on_sample is not None:
                on_sample(batch, out)
    finally:
        model.train(was_training)
    if reduce is not None:
        for acc in (final, base):
            acc.sums = {region: reduce(sums) for region, sums in acc.sums.items()}
        totals = reduce(torch.tensor([saturation, saturated_samples, count, len(bad_names)], dtype=torch.float64))
        saturation, saturated_samples, count = float(totals[0]), int(totals[1]), int(totals[2])
        bad_count = int(totals[3])
    else:
        bad_count = len(bad_names)
    if bad_data:
        raise PolstereoError(f"{reader.path}: sample {bad_data[0]!r}"
                             f"{f' and {len(bad_data) - 1} more' if len(bad_data) > 1 else ''} has NaN or infinite "
                             "values in its images; the data is broken, not the model ('polstereo inspect' lists them)")
    if bad_count:
        example = f" (e.g. {bad_names[0]!r})" if bad_names else ""
        raise PolstereoError(f"the model produced non-finite disparities on {bad_count} sample(s){example}")
    if count == 0:
        raise PolstereoError(f"{reader.path}: no sample with a disparity map to evaluate on")
    per_sample = [{"name": n, "final": f, "base": b} for n, f, b in zip(names, final.per_sample, base.per_sample)]
    return EvalResult(final=final.result(), base=base.result(),
                      saturation_fraction=saturation / saturated_samples if saturated_samples else None,
                      samples=count, per_sample=per_sample)


FEASIBILITY_STATISTICS = ("mean", "median", "p90")


@torch.no_grad()
def base_error_statistics(model, reader: H5Reader, device: torch.device | str = "cpu",
                          max_correction: float = 4.0, iters: int | None = None,
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
