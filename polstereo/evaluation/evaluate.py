"""Run a model over a polstereo HDF5 file and measure it.

One loop serves training validation and ``polstereo eval``: every sample is run at full
resolution, and the base-only and the final (base + correction) disparities are scored
with :mod:`polstereo.evaluation.metrics`. ``check-feasibility`` and the stage B gate
measure the base alone: :mod:`polstereo.evaluation.feasibility`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from polstereo.errors import PolstereoError
from polstereo.evaluation.metrics import MetricAccumulator
from polstereo.evaluation.samples import Batch, iterate_samples
from polstereo.polar.color import to_channels


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
                   reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   exclude_occluded: bool = False) -> EvalResult:
    """Score ``model`` on every labeled sample of ``reader``.

    ``reader`` is an :class:`H5Reader` or an ordinary-pair folder (anything with a
    ``batches(device, max_samples, shard)`` method); ordinary pairs run the base alone.

    ``warp_source`` is ``"pred"`` (inference behaviour) or ``"gt"`` (stage B's view).
    ``on_sample(batch, outputs)`` sees each sample's outputs (for pictures, logs).
    ``per_sample`` lists, per scored sample, its name, index in the file, recorded
    ``glass_kinds`` and ``lighting`` (None: not recorded), correction saturation and its
    ``final`` and ``base`` metrics per region (:mod:`polstereo.evaluation.breakdown`).
    Under DDP, ``shard=(rank, world)`` splits the samples and ``reduce`` sums the
    running totals over ranks (per-sample values stay local). ``exclude_occluded`` scores
    only pixels visible in both views, where the file has an occlusion mask.
    """
    was_training = model.training
    model.eval()
    totals = _Totals()
    device = torch.device(device)
    correction = getattr(model, "correction", None)
    channels = None if correction is None else correction.config.color_channels
    try:
        batches = (reader.batches(device, max_samples, shard) if hasattr(reader, "batches")
                   else iterate_samples(reader, device, max_samples, shard=shard, exclude_occluded=exclude_occluded))
        for batch in batches:
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = _model_outputs(model, batch, reader, channels, iters, warp_source)
            if totals.add(batch, out) and on_sample is not None:
                on_sample(batch, out)
    finally:
        model.train(was_training)
    if reduce is not None:
        totals.reduce(reduce)
    totals.check(reader)
    return totals.result()


def _model_outputs(model, batch: Batch, reader, channels: int | None, iters: int | None, warp_source: str) -> dict:
    """``model``'s outputs on one sample: the full model on a polarized one (seen with ``channels``
    colour channels, None: as stored), the base alone on an ordinary pair (its disparity is
    then the base disparity too)."""
    if batch.polarized:
        # a mono correction module on RGB data sees their luminance (as infer does)
        left, right = (x if channels is None else to_channels(x, channels, axis=2) for x in (batch.left, batch.right))
        return model(left, right, angles_deg=reader.angles_deg, iters=iters,
                     gt_disparity=batch.disparity if warp_source == "gt" else None, warp_source=warp_source)
    out = dict(model.forward_intensity(batch.left, batch.right, iters=iters))
    out["base_disparity"] = out["disparity"]
    return out


@dataclass
class _Totals:
    """What an evaluation has gathered so far: the metrics of the final and base disparities, the
    correction's saturation, the scored samples' descriptions and the samples the model failed on."""

    final: MetricAccumulator = field(default_factory=MetricAccumulator)
    base: MetricAccumulator = field(default_factory=MetricAccumulator)
    saturation: float = 0.0  # sum over the samples that report it
    saturated_samples: int = 0
    count: int = 0  # samples scored
    described: list = field(default_factory=list)
    bad_names: list = field(default_factory=list)  # samples with a non-finite prediction
    bad_data: list = field(default_factory=list)  # ... of them, those with non-finite images
    bad_count: int | None = None  # non-finite predictions over all ranks, once reduced

    def add(self, batch: Batch, out: dict) -> bool:
        """Score one sample's outputs; False, and the sample counted as failed, where the predicted
        disparity is not finite (not raised here: under DDP every rank must reach the reduction)."""
        pred, base_pred = out["disparity"].float(), out["base_disparity"].float()
        if not torch.isfinite(pred).all():
            self.bad_names.append(batch.name)
            if not (torch.isfinite(batch.left).all() and torch.isfinite(batch.right).all()):
                self.bad_data.append(batch.name)  # NaN in, NaN out: the data's fault, not the model's
            return False
        self.final.update(pred, batch.disparity, batch.valid, batch.transparent)
        self.base.update(base_pred, batch.disparity, batch.valid, batch.transparent)
        sample_saturation = None
        if out.get("saturation_fraction") is not None:
            sample_saturation = float(out["saturation_fraction"])
            self.saturation += sample_saturation
            self.saturated_samples += 1
        self.count += 1
        self.described.append({"name": batch.name, "index": batch.index,
                               "glass_kinds": None if batch.glass_kinds is None else list(batch.glass_kinds),
                               "lighting": batch.lighting, "saturation_fraction": sample_saturation})
        return True

    def reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the running totals over the ranks with ``reduce`` (the per-sample values stay local)."""
        for acc in (self.final, self.base):
            acc.sums = {region: reduce(sums) for region, sums in acc.sums.items()}
        totals = reduce(torch.tensor([self.saturation, self.saturated_samples, self.count, len(self.bad_names)],
                                     dtype=torch.float64))
        self.saturation, self.saturated_samples, self.count = float(totals[0]), int(totals[1]), int(totals[2])
        self.bad_count = int(totals[3])

    def check(self, reader) -> None:
        """Raise PolstereoError for broken data, non-finite predictions or nothing scored."""
        if self.bad_data:
            raise PolstereoError(f"{reader.path}: sample {self.bad_data[0]!r}"
                                 f"{f' and {len(self.bad_data) - 1} more' if len(self.bad_data) > 1 else ''} has "
                                 "NaN or infinite values in its images; the data is broken, not the model "
                                 "('polstereo inspect' lists them)")
        bad_count = len(self.bad_names) if self.bad_count is None else self.bad_count
        if bad_count:
            example = f" (e.g. {self.bad_names[0]!r})" if self.bad_names else ""
            raise PolstereoError(f"the model produced non-finite disparities on {bad_count} sample(s){example}")
        if self.count == 0:
            raise PolstereoError(f"{reader.path}: no sample with a disparity map to evaluate on")

    def result(self) -> EvalResult:
        per_sample = [{**d, "final": f, "base": b}
                      for d, f, b in zip(self.described, self.final.per_sample, self.base.per_sample)]
        return EvalResult(final=self.final.result(), base=self.base.result(),
                          saturation_fraction=self.saturation / self.saturated_samples if self.saturated_samples
                          else None, samples=self.count, per_sample=per_sample)


# ---------------------------------------------------------------------------- polstereo eval
@dataclass
class EvalConfig:
    """Options of ``polstereo eval``: a model file scored on a labeled HDF5 file (or a glob of
    shards), or on a Middlebury/KITTI folder of ordinary pairs (the base alone)."""

    checkpoint: Path
    data: Path
    iters: tuple[int, ...] = ()        # refinement iteration counts, one run each; () = the model's
    max_samples: int | None = None
    save_vis: Path | None = None       # colourised prediction, ground truth and error maps
    device: str = "auto"
    amp: str = "off"
    use_ema: bool = False              # the EMA teacher's weights
    per_sample_csv: Path | None = None  # one row per sample and iteration count (breakdown.PER_SAMPLE_COLUMNS)
    by: tuple[str, ...] = ()           # sample-averaged summaries per "kind" and/or "lighting" (breakdown.BY_KEYS)
    exclude_occluded: bool = False     # score non-occluded pixels only (where the file has an occlusion mask)


def run_eval(cfg: EvalConfig, log: Callable[[str], None] = lambda _: None) -> dict:
    """Score ``cfg.checkpoint`` once per iteration count; the report ``polstereo eval`` prints.

    With ``cfg.by``, each run gains ``by_kind`` / ``by_lighting`` (:func:`~polstereo.evaluation.breakdown.aggregate`);
    with ``cfg.per_sample_csv`` the per-sample values are written there too (its folder is
    checked before anything is evaluated).
    """
    from polstereo.data.h5.reader import open_dataset
    from polstereo.devices import resolve_amp, resolve_device
    from polstereo.evaluation.breakdown import aggregate, check_by, check_csv_path, write_per_sample_csv
    from polstereo.evaluation.classical import SGBM_NAME, SGBMStereo
    from polstereo.evaluation.ordinary import OrdinaryStereoFolder
    from polstereo.models.files import load_for_inference

    for key in cfg.by:
        check_by(key)
    if cfg.per_sample_csv is not None:
        check_csv_path(cfg.per_sample_csv)
    device = resolve_device(cfg.device)
    if str(cfg.checkpoint) == SGBM_NAME and not Path(cfg.checkpoint).exists():
        model, payload = SGBMStereo(), {"lineage": []}  # the classical reference (evaluation.classical)
    else:
        model, payload = load_for_inference(cfg.checkpoint, use_ema=cfg.use_ema, map_location=device)
    model = model.to(device).eval()
    data = Path(cfg.data)
    ordinary = data.is_dir()
    if ordinary:
        reader = OrdinaryStereoFolder(data)
        log(f"{data}: ordinary {reader.layout} pairs: the base model runs alone, no polarization correction "
            "was applied")
    else:
        reader = open_dataset(data)  # a file, or a glob of shards
    amp_dtype = resolve_amp(cfg.amp, device)
    counts = list(cfg.iters) or [None]
    runs = []
    for count in counts:
        vis_dir = _vis_dir(cfg.save_vis, counts, count)
        res = evaluate_model(model, reader, device, iters=count, max_samples=cfg.max_samples,
                             on_sample=None if vis_dir is None else _vis_writer(vis_dir), autocast_dtype=amp_dtype,
                             exclude_occluded=cfg.exclude_occluded)
        runs.append({"iters": count if count is not None else _default_iters(model), **res.to_dict(),
                     "polarization_gain": polarization_gain(res.base, res.final),
                     **({"vis_dir": str(vis_dir)} if vis_dir is not None else {}),
                     **{f"by_{key}": aggregate(res.per_sample, key) for key in dict.fromkeys(cfg.by)}})
    report = {"checkpoint": str(cfg.checkpoint), "data": str(cfg.data),
              "has_correction": model.correction is not None and not ordinary, "ordinary_pairs": ordinary,
              "max_correction": model.max_correction, "exclude_occluded": cfg.exclude_occluded,
              "lineage": [e.get("stage") for e in payload.get("lineage", [])], "runs": runs}
    if cfg.per_sample_csv is not None:
        rows = write_per_sample_csv(cfg.per_sample_csv, runs)
        report["per_sample_csv"] = {"path": str(cfg.per_sample_csv), "rows": rows}
    return report


def polarization_gain(base: dict, final: dict) -> dict:
    """Relative EPE reduction of base + correction over base alone, per region (%)."""
    out = {}
    for region, b in base.items():
        f = final.get(region, {})
        if b.get("pixels") and b["epe"] > 0 and not math.isnan(f.get("epe", math.nan)):
            out[region] = 100.0 * (b["epe"] - f["epe"]) / b["epe"]
    return out


def _vis_dir(save_vis: Path | None, counts: list, count) -> Path | None:
    """Where the pictures of the run with ``count`` iterations go: ``save_vis`` itself when one count is
    evaluated (the last one of repeated equal counts), else one subfolder per count."""
    if save_vis is None:
        return None
    if len(set(counts)) == 1:
        return save_vis if count == counts[-1] else None
    return Path(save_vis) / f"iters{count}"


def _default_iters(model) -> int | None:
    return getattr(getattr(model.base, "config", None), "iters", None)


def _vis_writer(directory: Path):
    """Per-sample callback writing colourised prediction, ground truth and error PNGs."""
    from polstereo.io.images import write_image
    from polstereo.io.visualise import comparison_pictures

    def write(batch: Batch, out: dict) -> None:  # write_image creates the folder with the first picture
        gt = batch.disparity[0, 0].cpu().numpy()
        pred = out["disparity"][0, 0].float().cpu().numpy()
        stem = f"{batch.index:06d}_{batch.name}" if batch.name else f"{batch.index:06d}"
        for suffix, picture in zip(("pred", "gt", "error"), comparison_pictures(pred, gt)):
            write_image(directory / f"{stem}_{suffix}.png", picture)

    return write
