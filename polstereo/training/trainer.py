"""One trainer for every stage; the stage table decides what it trains and how.

``train(TrainConfig(stage="A", ...))`` is what ``polstereo adapt`` runs; ``learn-pol``
and ``finetune`` differ only in ``stage``. The loop: build the model from ``--init``
(checking the lineage), freeze what the stage freezes, gate stage B on feasibility,
then optimise over a deterministic data plan, validating and saving atomic
checkpoints (``last.ckpt``, ``best.ckpt``) as it goes. ``resume=True`` continues from
``last.ckpt`` and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from polstereo.data.h5format import open_dataset
from polstereo.devices import resolve_amp, resolve_device
from polstereo.data.loader import (AugmentConfig, MixtureDataset, MixturePlan, PlanSampler, StereoCropDataset,
                                   to_device)
from polstereo.errors import EXIT_USAGE, InfeasibleError, PolstereoError
from polstereo.evaluation.evaluate import base_error_statistics, evaluate_model, feasibility_verdict
from polstereo.interrupts import ctrl_c_requests_stop
from polstereo.io.atomic import atomic_path, removed_if_left_empty
from polstereo.models.correction import CorrectionConfig, CorrectionModule
from polstereo.models.registry import build_model
from polstereo.training.checkpoint import (lineage_stages, load_model_checked, restore_rng, rng_state,
                                           save_checkpoint)
from polstereo.training.curves import write_train_curves
from polstereo.training.distributed import (all_reduce_sum, barrier, cleanup, init_distributed,
                                            release_after_error)
from polstereo.polar.features import intensity_image
from polstereo.polar.shape import shape_loss
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG
from polstereo.training.losses import masked_l1, pixel_weights, sequence_loss
from polstereo.training.mim import EMATeacher, ReconstructionHead, StudentWithHead, mask_views, patch_mask
from polstereo.training.schedules import Schedule, make_scheduler
from polstereo.training.stages import STAGES, StageConfig

MAX_CONSECUTIVE_NONFINITE = 20


@dataclass
class TrainConfig:
    """Every option of a training run (the CLI fills it; tests build it directly)."""

    stage: str
    out: Path
    train: list[Path]
    val: Path | None = None
    init: str | None = None
    model: str = "tiny"
    max_correction: float | None = None
    correction_search: float | None = None  # search cost volume radius of a new correction module (px)
    correction_context_stride: int | None = None  # context resolution of a new correction module (2 or 4)
    correction_context: str | None = None  # "dilated" or "unet" context of a new correction module
    correction_shape: bool | None = None  # a new correction module takes the one-view shape cues
    correction_integrate: bool | None = None  # a new correction module integrates a predicted slope field
    base_input: str | None = None  # "polarization": early fusion, the base matches intensity + Stokes (stage A)
    shape_weight: float = 0.0  # weight of the label-free shape-consistency loss (polar/shape.py)
    shape_min_dolp: float = 0.02  # pixels with a lower DoLP do not count in that loss
    dataset_steps: list[int] | None = None
    dataset_order: str = "sequential"
    steps: int = 1000
    batch_size: int = 2
    lr: float | None = None
    min_lr: float = 0.0
    lr_decay_method: str = "cosine"
    warmup_steps: int = 0
    decay_after_steps: int = 0
    weight_decay: float = 1e-5
    clip_grad_norm: float | None = 1.0
    crop_size: tuple[int, int] = (256, 320)
    scale_range: tuple[float, float] = (1.0, 1.0)
    vflip_prob: float = 0.0
    photometric: bool = True
    max_disparity: float | None = None
    transparent_weight: float = 1.0
    gamma: float = 0.9
    iters: int | None = None
    workers: int = 2
    seed: int = 0
    val_every: int = 500
    save_every: int = 500
    val_samples: int | None = None
    log_every: int = 10
    resume: bool = False
    force: bool = False
    device: str = "auto"
    amp: str = "auto"
    deterministic: bool = False
    feasibility_statistic: str = "mean"
    mask_ratio: float = 0.0
    mask_patch: int = 16
    mim_weight: float = 1.0
    ema_decay: float | None = None
    pseudo_weight: float = 1.0
    tensorboard: bool = False
    warp_source: str | None = None  # override the stage's pol_diff warp (ablations)
    quiet: bool = False
    stop_after: int | None = None  # end the run after this step (time-boxed jobs, interruption tests)

    # options that belong to one invocation, not to the run a config file repeats
    INVOCATION_ONLY = ("stage", "resume", "stop_after")

    def plain(self) -> dict:
        """JSON- and weights_only-safe dict of the options."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, (list, tuple)):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            out[f.name] = value
        return out


@dataclass
class TrainResult:
    out: Path
    steps_done: int
    skipped_steps: int
    val_metrics: dict | None
    best_score: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    feasibility: dict | None = None
    log: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ model set-up
def _initial_model(cfg: TrainConfig, stage: StageConfig) -> tuple[torch.nn.Module, list[dict], str]:
    """Build the starting model from ``--init``; returns ``(model, lineage, init description)``."""
    init = cfg.init
    if init is None or str(init).lower() == "none":
        if stage.requires and not cfg.force:
            raise PolstereoError(f"{stage.command} needs --init with a stage {stage.requires} checkpoint "
                                 f"(or --force to start from scratch)")
        return build_model({"base": cfg.model}), [], "none"
    if cfg.model.lower().startswith("s2m2"):
        # official S2M2 weights: {"state_dict": ...} without a polstereo model config
        model = build_model({"base": {"kind": "s2m2", "size": cfg.model.split("-")[-1].upper(),
                                      "weights": str(init)}})
        return model, [], f"s2m2:{init}"
    model, payload = load_model_checked(init)
    lineage = [dict(entry) for entry in payload.get("lineage", [])]
    if stage.requires and stage.requires not in lineage_stages(payload) and not cfg.force:
        have = ", ".join(lineage_stages(payload)) or "no stage"
        raise PolstereoError(f"{init}: {stage.command} (stage {stage.name}) needs a checkpoint that went through "
                             f"stage {stage.requires} ({STAGES[stage.requires].command}); this one has {have}. "
                             "Use --force to start anyway")
    return model, lineage, str(init)


def _prepare_model(model, cfg: TrainConfig, stage: StageConfig, color_channels: int):
    """Add or re-bound the correction module as the stage needs, then freeze per stage."""
    shape = {"search_radius": cfg.correction_search, "context_stride": cfg.correction_context_stride,
             "context": cfg.correction_context, "shape_features": cfg.correction_shape or None,
             "integrate": cfg.correction_integrate or None}
    shape = {k: v for k, v in shape.items() if v is not None}
    options = {"search_radius": "--correction-search", "context_stride": "--correction-context-stride",
               "context": "--correction-context", "shape_features": "--correction-shape",
               "integrate": "--correction-integrate"}
    if shape and not stage.with_correction:
        raise PolstereoError(f"{', '.join(options[k] for k in shape)} shape the correction module; "
                             f"stage {stage.name} ({stage.command}) trains none")
    if stage.with_correction and model.correction is None:
        model.correction = CorrectionModule(CorrectionConfig(color_channels=color_channels, **shape))
    else:
        for key, value in shape.items():
            have = None if model.correction is None else getattr(model.correction.config, key)
            if have != value:
                show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
                raise PolstereoError(f"{options[key]} {show(value)}: the --init checkpoint already has a correction "
                                     f"module with {key} {show(have)}; the option only shapes a new one (stage B, "
                                     "or finetune from a checkpoint without one)")
    if cfg.base_input is not None and cfg.base_input != model.base_input:
        if stage.name != "A":
            raise PolstereoError(f"--base-input {cfg.base_input}: the --init checkpoint's base matches "
                                 f"{model.base_input}; only adapt (stage A) may change what the base sees")
        model.base_input = cfg.base_input
    if cfg.max_correction is not None:
        if not (math.isfinite(cfg.max_correction) and cfg.max_correction > 0):
            raise PolstereoError(f"--max-correction must be a positive number of pixels, got {cfg.max_correction}",
                                 EXIT_USAGE)
        model.max_correction = float(cfg.max_correction)
    for part in ("base", "correction"):
        if getattr(model, part) is not None:
            model.set_frozen(part, part not in stage.trainable)
    return model


# ------------------------------------------------------------------------------ the loop
def _loss(out: dict, batch: dict, stage: StageConfig, cfg: TrainConfig, crop_w: int,
          angles_deg=DEFAULT_ANGLES_DEG) -> torch.Tensor:
    gt = batch["disparity"]
    max_disp = cfg.max_disparity if cfg.max_disparity is not None else float(crop_w)
    weight = pixel_weights(batch["valid"], batch["transparent"], gt, max_disp, cfg.transparent_weight)
    total = gt.new_zeros(())
    if "sequence" in stage.loss_terms:
        total = total + sequence_loss(out["disparities"], gt, weight, cfg.gamma)
    if "final" in stage.loss_terms and out.get("correction") is not None:
        total = total + masked_l1(out["disparity"], gt, weight)
    if cfg.shape_weight:
        # label-free: every pixel inside the image whose polarization is reliable, labeled or not
        total = total + cfg.shape_weight * shape_loss(out["disparity"], batch["left"], angles_deg,
                                                      mask=batch["inside"], min_dolp=cfg.shape_min_dolp)
    return total


def _val_score(metrics: dict) -> float:
    """What best.ckpt minimises: EPE on transparent pixels (all pixels when there are none)."""
    final = metrics["final"]
    region = "transparent" if final.get("transparent", {}).get("pixels") else "all"
    return float(final[region]["epe"])


def _check_options(cfg: TrainConfig) -> None:
    """One-line errors for option values that would otherwise fail deep inside the loop."""
    if cfg.steps <= 0 or cfg.batch_size <= 0:
        raise PolstereoError("--steps and --batch-size must be positive")
    low, high = cfg.scale_range
    if not 0 < low <= high:
        raise PolstereoError(f"--scale-range needs 0 < MIN <= MAX, got {low} {high}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise PolstereoError(f"--lr must be positive, got {cfg.lr}")
    if not (cfg.shape_weight >= 0 and math.isfinite(cfg.shape_weight)):
        raise PolstereoError(f"--shape-weight must be a finite number >= 0, got {cfg.shape_weight}")
    if not 0 <= cfg.shape_min_dolp < 1:
        raise PolstereoError(f"--shape-min-dolp must be in [0, 1), got {cfg.shape_min_dolp}")
    if cfg.min_lr < 0 or (cfg.clip_grad_norm is not None and cfg.clip_grad_norm < 0):
        raise PolstereoError("--min-lr and --clip-grad-norm must not be negative")
    if cfg.max_correction is not None and not (math.isfinite(cfg.max_correction) and cfg.max_correction > 0):
        raise PolstereoError(f"--max-correction must be a positive number of pixels, got {cfg.max_correction}",
                             EXIT_USAGE)


def _check_crop_fits(datasets, paths: list[Path], crop_size, scale_range) -> None:
    """A crop larger than the images would be padded with invalid pixels: refuse it up front."""
    crop_h, crop_w = crop_size
    low = float(scale_range[0])
    for dataset, path in zip(datasets, paths):
        h = min(shape[0] for shape in dataset.reader.shapes)
        w = min(shape[1] for shape in dataset.reader.shapes)
        fit_h, fit_w = math.floor(h * low), math.floor(w * low)
        if crop_h > fit_h or crop_w > fit_w:
            at_scale = f" at the smallest --scale-range {low:g}" if low != 1 else ""
            raise PolstereoError(f"--crop-size {crop_h} {crop_w} (height width) is larger than the smallest images "
                                 f"of {path} ({h} {w}){at_scale}; crops would be padded with invalid pixels. "
                                 f"Use --crop-size {fit_h} {fit_w} (or {fit_w}x{fit_h}) or smaller", EXIT_USAGE)


# options that may change between an interrupted run and its --resume (a run directory may
# also be moved: --out is where it is now)
RESUME_MAY_DIFFER = ("workers", "quiet", "device", "log_every", "val_every", "save_every", "val_samples",
                     "tensorboard", "force", "amp", "deterministic", "val", "out")
PATH_OPTIONS = ("train", "init")  # compared as the files they name (a symlink or relative path is the same file)


def _same_files(a, b) -> bool:
    def resolve(v):
        if isinstance(v, (list, tuple)):
            return [resolve(x) for x in v]
        if v is None or v == "none" or not Path(str(v)).exists():
            return v
        return str(Path(str(v)).resolve())
    return resolve(a) == resolve(b)


def _check_resume_options(cfg: TrainConfig, saved: dict, path: Path) -> None:
    """Refuse a --resume whose options would change the data plan, schedule or losses."""
    current = cfg.plain()
    changed = sorted(k for k, v in saved.items()
                     if k in current and k not in TrainConfig.INVOCATION_ONLY + RESUME_MAY_DIFFER
                     and current[k] != v and not (k in PATH_OPTIONS and _same_files(current[k], v)))
    if changed and not cfg.force:
        details = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {current[k]!r}" for k in changed[:3])
        raise PolstereoError(f"--resume: options differ from the run in {path} ({details}"
                             f"{', ...' if len(changed) > 3 else ''}); resume with the same options "
                             f"(--config {path.parent / 'config.yaml'}) or pass --force")


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Run one stage; see the module docstring. Raises PolstereoError on user errors.

    The first Ctrl-C asks the loop to stop at the end of the current step (it saves
    ``last.ckpt`` there and raises PolstereoError with exit code 130); a second one
    interrupts at once. Global torch settings changed for the run are restored.
    """
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    with ctrl_c_requests_stop() as stop:
        try:
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            with removed_if_left_empty(cfg.out):  # a run that fails at its start leaves no empty --out
                return _train(cfg, log, stop)
        except BaseException as err:
            release_after_error(err)
            raise
        finally:
            torch.use_deterministic_algorithms(deterministic_before)


def _train(cfg: TrainConfig, log: Callable[[str], None], stop: dict) -> TrainResult:
    if cfg.stage not in STAGES:
        raise PolstereoError(f"unknown stage {cfg.stage!r}")
    stage = STAGES[cfg.stage]
    if cfg.warp_source is not None:
        if cfg.warp_source not in ("gt", "pred"):
            raise PolstereoError(f"--warp-source must be gt or pred, got {cfg.warp_source!r}")
        if stage.warp_source is None:
            raise PolstereoError(f"--warp-source: stage {stage.name} ({stage.command}) has no correction module")
        stage = dataclasses.replace(stage, warp_source=cfg.warp_source)
    out_dir = Path(cfg.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PolstereoError(f"{out_dir}: exists and is not a directory; --out names a run directory")
    last_path, best_path = out_dir / "last.ckpt", out_dir / "best.ckpt"
    device = resolve_device(cfg.device)
    dist_info, device = init_distributed(device)
    if not dist_info.is_main:
        log = lambda msg: None  # noqa: E731  (one voice: rank 0)
    amp_dtype = resolve_amp(cfg.amp, device)
    _check_options(cfg)
    torch.manual_seed(cfg.seed)

    # files first: a typo should fail before minutes of model loading
    train_files = [Path(p) for p in cfg.train]
    if not train_files:
        raise PolstereoError("no --train file given")
    augment = AugmentConfig(crop_size=tuple(cfg.crop_size), scale_range=tuple(cfg.scale_range),
                            vflip_prob=cfg.vflip_prob)
    if not cfg.photometric:
        augment = dataclasses.replace(augment, gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), asymmetric_prob=0.0)
    datasets = [StereoCropDataset(p, augment, seed=cfg.seed) for p in train_files]
    if augment.crop_size is not None:
        _check_crop_fits(datasets, train_files, augment.crop_size, augment.scale_range)
    mixture = MixtureDataset(datasets)
    val_reader = open_dataset(cfg.val) if cfg.val else None  # a file, or a glob of shards

    resume_payload = None
    if cfg.resume:
        if not last_path.exists():
            raise PolstereoError(f"--resume: no {last_path} to resume from")
        model, resume_payload = load_model_checked(last_path)
        if resume_payload.get("stage") != stage.name:
            raise PolstereoError(f"--resume: {last_path} is a stage {resume_payload.get('stage')} run, "
                                 f"not stage {stage.name} ({stage.command})")
        _check_resume_options(cfg, resume_payload.get("train_config", {}), last_path)
        lineage = [dict(e) for e in resume_payload["lineage"][:-1]]
        init_desc = resume_payload["lineage"][-1].get("init", "")
    else:
        if last_path.exists() and not cfg.force:
            raise PolstereoError(f"{last_path} exists: use --resume to continue that run, or another --out")
        model, lineage, init_desc = _initial_model(cfg, stage)
    color_channels = 3 if datasets[0].reader.attrs["color"] == "rgb" else 1
    model = _prepare_model(model, cfg, stage, color_channels).to(device)
    angles = datasets[0].angles_deg
    if tuple(model.angles_deg) != tuple(angles):
        model.angles_deg = tuple(angles)

    feasibility = resume_payload.get("feasibility") if resume_payload is not None else None
    if stage.feasibility_gate and resume_payload is None:
        gate_reader = val_reader or open_dataset(train_files[0])
        stats = base_error_statistics(model, gate_reader, device, model.max_correction, iters=cfg.iters,
                                      max_samples=cfg.val_samples)
        ok, value, region = feasibility_verdict(stats, model.max_correction, cfg.feasibility_statistic)
        feasibility = {"stats": stats, "feasible": ok, "value": value, "region": region,
                       "statistic": cfg.feasibility_statistic, "max_correction": model.max_correction}
        log(f"feasibility: base {cfg.feasibility_statistic} error on {region} pixels {value:.3f} px "
            f"vs max_correction {model.max_correction:g} px -> {'feasible' if ok else 'INFEASIBLE'}")
        ev = stats.get("evidence", {}).get(region, {})
        if ev.get("pixels"):
            log(f"polarization evidence on {region} pixels the base gets wrong: {ev['polarization']:.3f} agree "
                f"better at the true disparity (0.5 = no signal; intensity {ev['intensity']:.3f})")
        if not ok and not cfg.force:
            raise InfeasibleError(
                f"infeasible stage B start: base {cfg.feasibility_statistic} error on {region} pixels is "
                f"{value:.2f} px > max_correction {model.max_correction:g} px; run more stage A (adapt), "
                "raise --max-correction, or pass --force")

    # deterministic data plan: steps per dataset, one global batch per step
    steps_per = cfg.dataset_steps or _split_steps(cfg.steps, len(datasets))
    if sum(steps_per) != cfg.steps:
        if cfg.dataset_steps:
            raise PolstereoError(f"--dataset-steps sum to {sum(steps_per)} but --steps is {cfg.steps}")
    global_batch = cfg.batch_size * dist_info.world_size
    plan = MixturePlan([len(d) for d in datasets], steps_per, global_batch, seed=cfg.seed, order=cfg.dataset_order)
    use_mim = cfg.mask_ratio > 0
    if not 0.0 <= cfg.mask_ratio < 1.0:
        raise PolstereoError(f"--mask-ratio must be in [0, 1), got {cfg.mask_ratio}")
    ema_decay = cfg.ema_decay if cfg.ema_decay is not None else (0.999 if use_mim else None)
    head = None
    if use_mim:
        feature_dim = getattr(getattr(model.base, "config", None), "feature_dim", None)
        if feature_dim is None:
            raise PolstereoError("--mask-ratio needs a built-in base model (its left features feed the "
                                 "reconstruction head)")
        channels = 3 if datasets[0].reader.attrs["color"] == "rgb" else 1
        head = ReconstructionHead(feature_dim, channels).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    if not trainable:
        raise PolstereoError(f"stage {stage.name}: nothing to train")
    peak_lr = cfg.lr if cfg.lr is not None else stage.lr
    optimizer = torch.optim.AdamW(trainable, lr=peak_lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(peak_lr, plan.total_steps, cfg.min_lr, cfg.warmup_steps, cfg.decay_after_steps,
                        cfg.lr_decay_method)
    scheduler = make_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_step, best_score, skipped, val_metrics = 0, math.inf, 0, None
    if resume_payload is not None:
        optimizer.load_state_dict(resume_payload["optimizer"])
        scheduler.load_state_dict(resume_payload["scheduler"])
        if resume_payload.get("scaler"):
            scaler.load_state_dict(resume_payload["scaler"])
        restore_rng(resume_payload.get("rng", {}))
        if head is not None:
            if "mim_head" not in resume_payload:
                raise PolstereoError(f"--resume: {last_path} was trained without --mask-ratio")
            head.load_state_dict(resume_payload["mim_head"])
        start_step = int(resume_payload["step"])
        saved_batch = int(resume_payload.get("global_batch", global_batch))
        if saved_batch != global_batch:
            raise PolstereoError(f"--resume: the run used a global batch of {saved_batch} "
                                 f"(batch size x processes); this one has {global_batch}")
        best_score = float(resume_payload.get("best_score", math.inf))
        skipped = int(resume_payload.get("skipped_steps", 0))
        val_metrics = resume_payload.get("val_metrics")
        log(f"resuming stage {stage.name} at step {start_step}/{plan.total_steps} from {last_path}")
        if start_step >= plan.total_steps:
            log("run already complete")

    teacher = None
    if ema_decay is not None:
        teacher = EMATeacher(model, ema_decay)
        if resume_payload is not None and "ema_state_dict" in resume_payload:
            teacher.model.load_state_dict(resume_payload["ema_state_dict"])

    entry = {"stage": stage.name, "command": stage.command, "init": init_desc,
             "train": [str(p) for p in train_files], "dataset_steps": list(steps_per),
             "val": str(cfg.val) if cfg.val else None, "steps": plan.total_steps}

    config_written = []

    def save(path: Path, step: int, complete: bool) -> None:
        if not dist_info.is_main:
            return
        if not config_written:
            # with the first checkpoint, not before: a run that fails at its start leaves no config.yaml
            _write_config_file(out_dir / "config.yaml",
                               {k: v for k, v in cfg.plain().items() if k not in TrainConfig.INVOCATION_ONLY})
            config_written.append(True)
        if path == last_path:
            write_train_curves(out_dir / "metrics.jsonl", out_dir / "train_curves.png")
        record = dict(entry, steps_done=step, complete=complete, metrics=_brief(val_metrics),
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%S") if complete else None)
        save_checkpoint(path, model, stage=stage.name, lineage=lineage + [record], train_config=cfg.plain(),
                        step=step, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict() if scaler.is_enabled() else {}, rng=rng_state(),
                        val_metrics=val_metrics, best_score=best_score, skipped_steps=skipped,
                        overflow_steps=overflow_steps,
                        feasibility=feasibility, global_batch=global_batch, world_size=dist_info.world_size,
                        **({"ema_state_dict": teacher.model.state_dict(), "ema_decay": ema_decay} if teacher else {}),
                        **({"mim_head": head.state_dict()} if head is not None else {}))

    def validate(step: int) -> None:
        nonlocal val_metrics, best_score
        if val_reader is None:
            return
        pictures = {}

        def keep_first(batch, out) -> None:
            if not pictures:
                pictures.update(batch=batch, out={k: out[k] for k in ("disparity", "correction") if k in out})

        res = evaluate_model(model, val_reader, device, iters=cfg.iters, max_samples=cfg.val_samples,
                             on_sample=keep_first if board is not None else None,
                             autocast_dtype=amp_dtype, shard=(dist_info.rank, dist_info.world_size),
                             reduce=(lambda t: all_reduce_sum(t, dist_info)) if dist_info.enabled else None)
        val_metrics = {"final": res.final, "base": res.base, "saturation_fraction": res.saturation_fraction,
                       "step": step}
        score = _val_score(val_metrics)
        if dist_info.is_main:
            _append_jsonl(log_path, {"type": "val", "step": step, "final": _brief(val_metrics),
                                     "base": _brief({"final": res.base}),
                                     "saturation_fraction": res.saturation_fraction})
        if board is not None:
            for output, metrics in (("final", res.final), ("base", res.base)):
                for region, m in metrics.items():
                    if m.get("pixels"):
                        for key in ("epe", "bad3", "d1"):
                            board.add_scalar(f"val_{output}/{region}_{key}", m[key], step)
            if res.saturation_fraction is not None:
                board.add_scalar("val/saturation_fraction", res.saturation_fraction, step)
            if pictures:
                board.add_image("val/left_gt_pred_error_correction", _picture_grid(pictures, model), step,
                                dataformats="HWC")
        log(f"step {step}: val EPE all {res.final['all']['epe']:.3f} px, transparent "
            f"{res.final.get('transparent', {}).get('epe', float('nan')):.3f} px"
            + (f", saturation {res.saturation_fraction:.3f}" if res.saturation_fraction is not None else ""))
        if score < best_score:
            best_score = score
            save(best_path, step, complete=False)

    out_dir.mkdir(parents=True, exist_ok=True)
    board = _tensorboard(out_dir) if cfg.tensorboard and dist_info.is_main else None
    sampler = PlanSampler(plan, start_step=start_step, rank=dist_info.rank, world_size=dist_info.world_size)
    loader = DataLoader(mixture, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    train_model = StudentWithHead(model, head) if head is not None else model
    if dist_info.enabled:
        # frozen parts have requires_grad=False, so DDP neither waits for nor reduces them
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    log(f"stage {stage.name} ({stage.command}): {plan.total_steps} steps, global batch {global_batch} "
        f"({cfg.batch_size} x {dist_info.world_size} process{'es' if dist_info.enabled else ''}), device {device}"
        + (f", amp {str(amp_dtype).split('.')[-1]}" if amp_dtype is not None else ""))
    log_path = out_dir / "metrics.jsonl"
    if dist_info.is_main:
        _truncate_log(log_path, start_step)
    history: list[dict] = []
    consecutive_bad = 0
    in_update = False
    overflow_steps = int(resume_payload.get("overflow_steps", 0)) if resume_payload else 0
    step = start_step
    end_step = plan.total_steps if cfg.stop_after is None else min(plan.total_steps, cfg.stop_after)
    from tqdm import tqdm

    bar = tqdm(total=end_step - start_step, desc=f"{stage.command}",
               disable=True if (cfg.quiet or not dist_info.is_main) else None, leave=False)
    model.train()
    t0 = time.perf_counter()
    data_wait = [0.0]  # seconds the loop spent blocked on the data loader
    try:
        for batch in _timed(loader, data_wait):
            if step >= end_step:
                break
            batch = to_device(batch, device)
            gt_for_warp = torch.where(batch["valid"], batch["disparity"], torch.full_like(batch["disparity"], math.nan))
            left, right = batch["left"], batch["right"]
            if use_mim:
                size, n = left.shape[-2:], left.shape[0]
                mask_seed = (cfg.seed * 1_000_003 + step) * 64 + dist_info.rank * 2
                mask_left = patch_mask(n, size, cfg.mask_ratio, cfg.mask_patch, mask_seed, device)
                mask_right = patch_mask(n, size, cfg.mask_ratio, cfg.mask_patch, mask_seed + 1, device)
                left, right = mask_views(left, mask_left), mask_views(right, mask_right)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = train_model(left, right, angles_deg=angles, iters=cfg.iters,
                                  gt_disparity=gt_for_warp if stage.warp_source == "gt" else None,
                                  warp_source=stage.warp_source or "pred")
                pseudo = None
                if teacher is not None:
                    pseudo = teacher(batch["left"], batch["right"], angles_deg=angles, iters=cfg.iters,
                                     warp_source="pred")["disparity"].float()
            loss = _loss(out, batch, stage, cfg, batch["left"].shape[-1], angles)
            if use_mim:
                target = intensity_image(batch["left"], angles)
                weight = (mask_left & batch["inside"]).expand_as(target).float()  # not the crop padding
                loss = loss + cfg.mim_weight * masked_l1(out["reconstruction"], target, weight)
            if pseudo is not None and cfg.pseudo_weight:
                # the teacher supervises only where ground truth is missing, inside the image
                unlabeled = (~batch["valid"] & batch["inside"]).float() * torch.isfinite(pseudo).float()
                loss = loss + cfg.pseudo_weight * masked_l1(out["disparity"], torch.nan_to_num(pseudo), unlabeled)
            optimizer.zero_grad(set_to_none=True)
            in_update = True  # from here to `step += 1` the state is between two steps
            finite = bool(torch.isfinite(loss))
            if dist_info.enabled:
                # every rank must agree to skip, or the gradient all-reduce would hang
                finite = float(all_reduce_sum(torch.tensor([0.0 if finite else 1.0], device=device), dist_info)) == 0
                if not finite:
                    (loss * 0).backward()  # let DDP finish this iteration's reduction
                    optimizer.zero_grad(set_to_none=True)
            if not finite:
                skipped += 1
                consecutive_bad += 1
                if consecutive_bad >= MAX_CONSECUTIVE_NONFINITE:
                    raise PolstereoError(f"{consecutive_bad} consecutive non-finite losses at step {step}; "
                                         "lower --lr, use --amp bf16 or off, or check the data")
            else:
                consecutive_bad = 0
                scaler.scale(loss).backward()
                if cfg.clip_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm)
                scale_before = scaler.get_scale() if scaler.is_enabled() else None
                scaler.step(optimizer)
                scaler.update()
                if scale_before is not None and scaler.get_scale() < scale_before:
                    overflow_steps += 1  # fp16 gradients overflowed: the scaler skipped this update
                if teacher is not None:
                    teacher.update(model)
            with warnings.catch_warnings():
                # after a skipped (non-finite or fp16-overflow) update torch warns that the scheduler
                # stepped without the optimizer: intended here, the schedule follows the step count
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                scheduler.step()
            step += 1
            in_update = False
            bar.update(1)
            if dist_info.is_main and (step % cfg.log_every == 0 or step == end_step):
                record = {"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                          "skipped": skipped, "overflow_steps": overflow_steps, "seconds": round(time.perf_counter() - t0, 2)}
                if out.get("saturation_fraction") is not None:
                    record["saturation_fraction"] = float(out["saturation_fraction"])
                record["pairs_per_s"] = round(cfg.batch_size * dist_info.world_size * (step - start_step)
                                              / max(record["seconds"], 1e-9), 3)
                # how much of the time the loop waited for data (0: the device never starved)
                record["data_wait_s"] = round(data_wait[0], 3)
                record["data_wait_share"] = round(data_wait[0] / max(time.perf_counter() - t0, 1e-9), 4)
                history.append(record)
                _append_jsonl(log_path, {"type": "train", **record})
                if board is not None:
                    for key in ("loss", "lr", "saturation_fraction", "pairs_per_s", "data_wait_share"):
                        if key in record:
                            board.add_scalar(f"train/{key}", record[key], step)
                postfix = {"loss": f"{record['loss']:.3f}", "lr": f"{record['lr']:.2e}"}
                if "saturation_fraction" in record:
                    postfix["sat"] = f"{record['saturation_fraction']:.3f}"
                if val_metrics:
                    postfix["val_epe"] = f"{_val_score(val_metrics):.3f}"
                bar.set_postfix(postfix)
            if cfg.val_every and step % cfg.val_every == 0 and step < plan.total_steps:
                validate(step)
            if cfg.save_every and step % cfg.save_every == 0 and step < end_step:
                save(last_path, step, complete=False)
            if stop["requested"] and step < end_step:
                raise KeyboardInterrupt
    except PolstereoError as err:
        bar.close()
        raise PolstereoError(_worker_message(str(err)), err.exit_code) from None
    except KeyboardInterrupt:
        bar.close()
        if in_update:
            # weights, optimizer and step counter disagree mid-update: keep the last consistent save
            raise PolstereoError(f"interrupted during step {step + 1}; {last_path} (if any) holds the last "
                                 "saved step, continue with --resume", 130) from None
        save(last_path, step, complete=False)
        raise PolstereoError(f"interrupted at step {step}; {last_path} saved, continue with --resume", 130) from None
    bar.close()
    complete = step >= plan.total_steps
    if step > start_step:  # a --resume of a finished run changes nothing and rewrites nothing
        if complete and (val_metrics is None or val_metrics.get("step") != step):
            validate(step)
        save(last_path, step, complete=complete)
        if complete and val_reader is None:
            save(best_path, step, complete=True)  # nothing to choose by: the final weights
    if board is not None:
        board.close()
    if dist_info.enabled:
        # DDP's reducer frees the process group without dropping the GIL. Were it to hold the
        # last reference (after destroy_process_group), its destructor would wait for gloo's
        # worker threads while one of them waits for the GIL to free a finished collective's
        # tensors: a deadlock at exit (pytorch/pytorch#56297). Free the wrapper first.
        del train_model
        gc.collect()
    barrier(dist_info)
    cleanup(dist_info)
    log(f"stage {stage.name} ({stage.command}): {step}/{plan.total_steps} steps"
        f"{' (stopped early)' if not complete else ''}, {skipped} skipped non-finite, checkpoint {last_path}")
    return TrainResult(out=out_dir, steps_done=step, skipped_steps=skipped, val_metrics=val_metrics,
                       best_score=None if math.isinf(best_score) else best_score, last_checkpoint=last_path,
                       best_checkpoint=best_path if best_path.exists() else None, feasibility=feasibility,
                       log=history)


def _timed(loader, clock: list[float]):
    """Iterate ``loader``, adding the seconds spent waiting in ``next`` to ``clock[0]``."""
    it = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        clock[0] += time.perf_counter() - start
        yield batch


def _write_config_file(path: Path, options: dict) -> None:
    """The run's resolved options as YAML keyed by long option name (what ``--config`` reads back)."""
    import yaml

    plain = {k.replace("_", "-"): (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plain, sort_keys=False, default_flow_style=None))


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop records of steps after ``last_step`` (written before an interruption, replayed now)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(_finite_or_null(record), allow_nan=False) + "\n")


def _finite_or_null(value):
    """``value`` with NaN and ±inf floats replaced by None: JSON has no NaN (null is what it has)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _worker_message(message: str) -> str:
    """The original one-line message of a PolstereoError that a DataLoader worker re-raised here.

    torch wraps it as "Caught PolstereoError in DataLoader worker process 0. Original Traceback ...";
    the user needs the last line, not the worker's traceback.
    """
    if not message.startswith("Caught "):
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split("PolstereoError: ", 1)[-1]


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PolstereoError("--tensorboard needs the tensorboard package: pip install 'polstereo[tensorboard]'") \
            from None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def _picture_grid(pictures: dict, model):
    """One row of pictures for TensorBoard: left intensity, ground truth, prediction, error, correction."""
    import numpy as np

    from polstereo.io.visualise import comparison_pictures, correction_to_rgb, image_to_uint8

    batch, out = pictures["batch"], pictures["out"]
    left = intensity_image(batch.left.float(), model.angles_deg)[0].clamp(0, 1).cpu().numpy()
    gray = image_to_uint8(left)
    gray = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray
    pred_rgb, gt_rgb, error_rgb = comparison_pictures(out["disparity"][0, 0].float().cpu().numpy(),
                                                      batch.disparity[0, 0].cpu().numpy())
    tiles = [gray, gt_rgb, pred_rgb, error_rgb]
    if out.get("correction") is not None:
        tiles.append(correction_to_rgb(out["correction"][0, 0].float().cpu().numpy(), model.max_correction))
    return np.concatenate(tiles, axis=1)


def _split_steps(steps: int, n: int) -> list[int]:
    base, extra = divmod(steps, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _brief(metrics: dict | None) -> dict | None:
    """The lineage's summary of validation metrics: EPE and bad-3 per region."""
    if not metrics:
        return None
    final = metrics["final"]
    return {region: {"epe": m["epe"], "bad3": m["bad3"]} for region, m in final.items() if m.get("pixels")}
