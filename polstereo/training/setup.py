"""Everything a stage's loop starts from: stage, options, data plan, model, optimiser.

:func:`set_up` resolves the stage (and a ``--warp-source`` override), checks the
options, opens the data and fixes the deterministic data plan, builds the model from
``--init`` (checking the lineage) or from ``last.ckpt`` on ``--resume`` (checking the
options did not change), adds or re-bounds the correction module (shaped by the model
section's correction switches, passed to its config as they are) and freezes what the
stage freezes, gates stage B on feasibility, and builds the optimiser, the masked
modelling head and the EMA teacher, restored on ``--resume``. Errors users can cause are
one-line PolstereoErrors, raised before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from polstereo.data.h5.reader import open_dataset
from polstereo.data.loader import AugmentConfig, MixtureDataset, MixturePlan, StereoCropDataset
from polstereo.devices import resolve_amp, resolve_device
from polstereo.errors import EXIT_USAGE, InfeasibleError, PolstereoError
from polstereo.evaluation.feasibility import base_error_statistics, feasibility_verdict, infeasible_reason
from polstereo.models.base.s2m2 import S2M2Base
from polstereo.models.correction import CorrectionConfig, CorrectionModule
from polstereo.models.full import check_warp_source
from polstereo.models.registry import base_spec, build_model
from polstereo.training.checkpoint import lineage_stages, load_model_checked, restore_rng
from polstereo.training.config import CorrectionOptions, TrainConfig
from polstereo.training.distributed import DistInfo, init_distributed
from polstereo.training.mim import EMATeacher, ReconstructionHead, StudentWithHead
from polstereo.training.stages import STAGES, StageConfig
from polstereo.training.step import Optimiser, StepCounters, make_optimiser

# options (by flat name) that may change between an interrupted run and its --resume (a run
# directory may also be moved: --out is where it is now)
RESUME_MAY_DIFFER = ("workers", "quiet", "device", "log_every", "val_every", "save_every", "val_samples",
                     "tensorboard", "force", "amp", "deterministic", "val", "out")
PATH_OPTIONS = ("train", "init")  # compared as the files they name (a symlink or relative path is the same file)


# ------------------------------------------------------------------------------ stage and options
def resolve_stage(cfg: TrainConfig) -> StageConfig:
    """The stage's row of the table, with the pol_diff warp ``--warp-source`` overrides."""
    if cfg.stage not in STAGES:
        raise PolstereoError(f"unknown stage {cfg.stage!r}")
    stage, warp_source = STAGES[cfg.stage], cfg.model.warp_source
    if warp_source is not None:
        check_warp_source(warp_source, "--warp-source")
        if stage.warp_source is None:
            raise PolstereoError(f"--warp-source: stage {stage.name} ({stage.command}) has no correction module")
        stage = dataclasses.replace(stage, warp_source=warp_source)
    return stage


def check_options(cfg: TrainConfig) -> None:
    """One-line errors for option values that would otherwise fail deep inside the loop.

    ``--max-correction`` is not among them: the model checks its bound when it is set."""
    optim = cfg.optim
    if cfg.run.steps <= 0 or cfg.data.batch_size <= 0:
        raise PolstereoError("--steps and --batch-size must be positive")
    low, high = cfg.data.scale_range
    if not 0 < low <= high:
        raise PolstereoError(f"--scale-range needs 0 < MIN <= MAX, got {low} {high}")
    if optim.lr is not None and not optim.lr > 0:
        raise PolstereoError(f"--lr must be positive, got {optim.lr}")
    if not (optim.shape_weight >= 0 and math.isfinite(optim.shape_weight)):
        raise PolstereoError(f"--shape-weight must be a finite number >= 0, got {optim.shape_weight}")
    if not 0 <= optim.shape_min_dolp < 1:
        raise PolstereoError(f"--shape-min-dolp must be in [0, 1), got {optim.shape_min_dolp}")
    if optim.min_lr < 0 or (optim.clip_grad_norm is not None and optim.clip_grad_norm < 0):
        raise PolstereoError("--min-lr and --clip-grad-norm must not be negative")
    if not 0.0 <= cfg.mim.mask_ratio < 1.0:
        raise PolstereoError(f"--mask-ratio must be in [0, 1), got {cfg.mim.mask_ratio}")


# ------------------------------------------------------------------------------ data plan
@dataclass
class TrainingData:
    """The training files, their crop datasets and mixture, the validation reader and the plan."""

    files: list[Path]
    datasets: list[StereoCropDataset]
    mixture: MixtureDataset
    val_reader: object | None  # an H5Reader (or sharded reader) of --val
    steps_per: list[int]       # global steps drawn from each training file
    plan: MixturePlan

    @property
    def angles_deg(self) -> tuple:
        """Polarizer angles of the (first) training file, degrees."""
        return self.datasets[0].angles_deg

    @property
    def color_channels(self) -> int:
        return 3 if self.datasets[0].reader.attrs["color"] == "rgb" else 1


def open_training_data(cfg: TrainConfig, world_size: int) -> TrainingData:
    """Open the files (a typo fails before minutes of model loading) and fix the data plan.

    The plan is deterministic: ``--dataset-steps`` (default: ``--steps`` split evenly)
    global batches of ``batch_size x world_size`` samples per file, in ``--dataset-order``.
    """
    data, steps, seed = cfg.data, cfg.run.steps, cfg.run.seed
    files = [Path(p) for p in data.train]
    if not files:
        raise PolstereoError("no --train file given")
    augment = AugmentConfig(crop_size=tuple(data.crop_size), scale_range=tuple(data.scale_range),
                            vflip_prob=data.vflip_prob)
    if not data.photometric:
        augment = dataclasses.replace(augment, gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), asymmetric_prob=0.0)
    datasets = [StereoCropDataset(p, augment, seed=seed) for p in files]
    if augment.crop_size is not None:
        _check_crop_fits(datasets, files, augment.crop_size, augment.scale_range)
    val_reader = open_dataset(data.val) if data.val else None  # a file, or a glob of shards
    steps_per = data.dataset_steps or _split_steps(steps, len(datasets))
    if sum(steps_per) != steps and data.dataset_steps:
        raise PolstereoError(f"--dataset-steps sum to {sum(steps_per)} but --steps is {steps}")
    plan = MixturePlan([len(d) for d in datasets], steps_per, data.batch_size * world_size, seed=seed,
                       order=data.dataset_order)
    return TrainingData(files, datasets, MixtureDataset(datasets), val_reader, list(steps_per), plan)


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


def _split_steps(steps: int, n: int) -> list[int]:
    """``steps`` split into ``n`` near-equal parts, the larger ones first."""
    base, extra = divmod(steps, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


# ------------------------------------------------------------------------------ init and resume
@dataclass
class Start:
    """The model a run starts from, the lineage before this stage, and the ``--resume`` payload."""

    model: nn.Module
    lineage: list[dict]
    init_desc: str             # what --init was, for the lineage record
    resume: dict | None = None  # last.ckpt's payload when resuming


def starting_point(cfg: TrainConfig, stage: StageConfig, last_path: Path) -> Start:
    """``last.ckpt`` on ``--resume`` (same stage, same options), else the ``--init`` model."""
    if not cfg.run.resume:
        if last_path.exists() and not cfg.run.force:
            raise PolstereoError(f"{last_path} exists: use --resume to continue that run, or another --out")
        return Start(*_initial_model(cfg, stage))
    if not last_path.exists():
        raise PolstereoError(f"--resume: no {last_path} to resume from")
    model, payload = load_model_checked(last_path)
    if payload.get("stage") != stage.name:
        raise PolstereoError(f"--resume: {last_path} is a stage {payload.get('stage')} run, "
                             f"not stage {stage.name} ({stage.command})")
    _check_resume_options(cfg, payload.get("train_config", {}), last_path)
    lineage = [dict(e) for e in payload["lineage"][:-1]]
    return Start(model, lineage, payload["lineage"][-1].get("init", ""), payload)


def _initial_model(cfg: TrainConfig, stage: StageConfig) -> tuple[nn.Module, list[dict], str]:
    """Build the starting model from ``--init``; returns ``(model, lineage, init description)``."""
    init, force = cfg.model.init, cfg.run.force
    spec = base_spec(cfg.model.name)
    if init is None or str(init).lower() == "none":
        if stage.requires and not force:
            raise PolstereoError(f"{stage.command} needs --init with a stage {stage.requires} checkpoint "
                                 f"(or --force to start from scratch)")
        return build_model({"base": spec}), [], "none"
    if spec["kind"] == "s2m2":
        # official S2M2 weights: {"state_dict": ...} without a polstereo model config or lineage
        _check_lineage(init, stage, [], "official S2M2 weights have no stage", force)
        return build_model({"base": {**spec, "weights": str(init)}}), [], f"s2m2:{init}"
    model, payload = load_model_checked(init)
    lineage = [dict(entry) for entry in payload.get("lineage", [])]
    have = lineage_stages(payload)
    _check_lineage(init, stage, have, f"this one has {', '.join(have) or 'no stage'}", force)
    return model, lineage, str(init)


def _check_lineage(init, stage: StageConfig, have: list[str], what: str, force: bool) -> None:
    """Refuse an ``--init`` whose lineage ``have`` lacks the stage this one builds on (unless forced)."""
    if stage.requires and stage.requires not in have and not force:
        raise PolstereoError(f"{init}: {stage.command} (stage {stage.name}) needs a checkpoint that went through "
                             f"stage {stage.requires} ({STAGES[stage.requires].command}); {what}. "
                             "Use --force to start anyway")


def _same_files(a, b) -> bool:
    """Whether two option values name the same files (paths resolved where they exist)."""
    def resolve(v):
        if isinstance(v, (list, tuple)):
            return [resolve(x) for x in v]
        if v is None or v == "none" or not Path(str(v)).exists():
            return v
        return str(Path(str(v)).resolve())
    return resolve(a) == resolve(b)


def _check_resume_options(cfg: TrainConfig, saved: dict, path: Path) -> None:
    """Refuse a --resume whose options would change the data plan, schedule or losses.

    Compared by flat name, so a checkpoint written before the config had sections (a flat
    ``train_config``) compares as one written now."""
    current, saved = cfg.flat(), TrainConfig.flatten(saved)
    changed = sorted(k for k, v in saved.items()
                     if k in current and k not in TrainConfig.INVOCATION_ONLY + RESUME_MAY_DIFFER
                     and current[k] != v and not (k in PATH_OPTIONS and _same_files(current[k], v)))
    if changed and not cfg.run.force:
        details = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {current[k]!r}" for k in changed[:3])
        raise PolstereoError(f"--resume: options differ from the run in {path} ({details}"
                             f"{', ...' if len(changed) > 3 else ''}); resume with the same options "
                             f"(--config {path.parent / 'config.yaml'}) or pass --force")


# ------------------------------------------------------------------------------ model preparation
def prepare_model(model, cfg: TrainConfig, stage: StageConfig, color_channels: int, resuming: bool = False):
    """Add or re-bound the correction module as the stage needs, set ``--base-input`` (stage A;
    ``polarization-adapter`` attaches a zero-initialised adapter to an intensity base,
    ``polarization-volume`` a second correlation volume with a zero gate to a built-in
    base), then freeze per stage (adapter and volume with the base). ``--new-correction`` drops the
    --init checkpoint's correction module first (not on ``--resume``: last.ckpt holds the new one)."""
    options = cfg.model
    if options.new_correction:
        if stage.name != "B":
            raise PolstereoError(f"--new-correction: only learn-pol (stage B) trains a new correction module, "
                                 f"not {stage.command}")
        if not resuming:
            model.correction = None
    _fit_correction(model, options.correction, stage, color_channels)
    if options.base_input is not None and options.base_input != model.base_input:
        if stage.name != "A":
            raise PolstereoError(f"--base-input {options.base_input}: the --init checkpoint's base matches "
                                 f"{model.base_input}; only adapt (stage A) may change what the base sees")
        # a new adapter's (or volume's) layers come from the run's seed: reruns start identically
        model.set_base_input(options.base_input, seed=cfg.run.seed)
    if options.max_correction is not None:
        model.max_correction = options.max_correction  # the model checks the bound
    for part in ("base", "correction"):
        if getattr(model, part) is not None:
            model.set_frozen(part, part not in stage.trainable)
    freeze_parameters(model, options.freeze)
    return model


def freeze_parameters(model: nn.Module, names: Sequence[str]) -> None:
    """``--freeze``: no gradients for the parameters whose dotted names start with one of ``names``
    in whole parts (``base.update`` holds ``base.update.gru.*``, not ``base.updates.*``).
    A name no parameter has is refused in one line that lists the model's parts."""
    def under(parameter_name: str, name: str) -> bool:
        return parameter_name == name or parameter_name.startswith(name + ".")

    parameters = dict(model.named_parameters())
    for name in names:
        if not any(under(p, name) for p in parameters):
            parts = sorted({".".join(p.split(".")[:3]) for p in parameters})
            raise PolstereoError(f"--freeze {name}: the model has no parameters under that name; "
                                 f"its parts: {', '.join(parts)}")
    for parameter_name, parameter in parameters.items():
        if any(under(parameter_name, name) for name in names):
            parameter.requires_grad_(False)


def _fit_correction(model, switches: CorrectionOptions, stage: StageConfig, color_channels: int) -> None:
    """Give the model the correction module the stage needs, shaped by the ``switches``
    (``cfg.model.correction``, the :class:`CorrectionConfig` fields by name) when new.

    They only shape a new module: asking an existing one for another shape is refused. A
    switch is asked for when set (a flag: when True).
    """
    shape = {k: v for k, v in dataclasses.asdict(switches).items() if v is not None and v is not False}
    flag = {f.name: f.metadata["option"] for f in dataclasses.fields(switches)}
    if shape and not stage.with_correction:
        raise PolstereoError(f"{', '.join(flag[k] for k in shape)} shape the correction module; "
                             f"stage {stage.name} ({stage.command}) trains none")
    if stage.with_correction and model.correction is None:
        model.correction = CorrectionModule(CorrectionConfig(color_channels=color_channels, **shape))
        return
    for key, value in shape.items():
        have = None if model.correction is None else getattr(model.correction.config, key)
        if have != value:
            show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
            raise PolstereoError(f"{flag[key]} {show(value)}: the --init checkpoint already has a "
                                 f"correction module with {key} {show(have)}; the option only shapes a new one "
                                 "(learn-pol --new-correction replaces it; or finetune from a checkpoint without one)")


def feasibility_gate(model, cfg: TrainConfig, reader, device: torch.device, log: Callable[[str], None]) -> dict:
    """Measure the base error against ``max_correction`` on ``reader``; refuse an infeasible start.

    Returns the record the checkpoint keeps; raises InfeasibleError (exit 3) unless ``--force``.
    """
    statistic = cfg.run.feasibility_statistic
    stats = base_error_statistics(model, reader, device, model.max_correction, iters=cfg.model.iters,
                                  max_samples=cfg.data.val_samples)
    ok, value, region = feasibility_verdict(stats, model.max_correction, statistic)
    log(f"feasibility: base {statistic} error on {region} pixels {value:.3f} px "
        f"vs max_correction {model.max_correction:g} px -> {'feasible' if ok else 'INFEASIBLE'}")
    ev = stats.get("evidence", {}).get(region, {})
    if ev.get("pixels"):
        log(f"polarization evidence on {region} pixels the base gets wrong: {ev['polarization']:.3f} agree "
            f"better at the true disparity (0.5 = no signal; intensity {ev['intensity']:.3f})")
    if not ok and not cfg.run.force:
        reason = infeasible_reason(statistic, region, value, model.max_correction)
        raise InfeasibleError(f"infeasible stage B start: {reason}, or pass --force")
    return {"stats": stats, "feasible": ok, "value": value, "region": region,
            "statistic": statistic, "max_correction": model.max_correction}


def reconstruction_head(cfg: TrainConfig, model, color_channels: int,
                        device: torch.device) -> ReconstructionHead | None:
    """The masked-modelling head on the base's left features (None without ``--mask-ratio``)."""
    if cfg.mim.mask_ratio <= 0:
        return None
    feature_dim = getattr(getattr(model.base, "config", None), "feature_dim", None)
    if feature_dim is None:
        raise PolstereoError("--mask-ratio needs a built-in base model (its left features feed the "
                             "reconstruction head)")
    return ReconstructionHead(feature_dim, color_channels).to(device)


def make_teacher(cfg: TrainConfig, model, resume: dict | None) -> EMATeacher | None:
    """The EMA teacher (``--ema-decay``, 0.999 with ``--mask-ratio``; None without either)."""
    mim = cfg.mim
    decay = mim.ema_decay if mim.ema_decay is not None else (0.999 if mim.mask_ratio > 0 else None)
    if decay is None:
        return None
    teacher = EMATeacher(model, decay)
    if resume is not None and "ema_state_dict" in resume:
        teacher.model.load_state_dict(resume["ema_state_dict"])
    return teacher


def may_leave_parameters_unused(model) -> bool:
    """Whether a step can leave trainable parameters of ``model`` without a gradient.

    DistributedDataParallel refuses such a step unless built with
    ``find_unused_parameters=True``, which makes it search the autograd graph after every
    forward. Some of S2M2's parameters get no gradient (with ``--iters 1``, at least), so a
    trainable S2M2 base needs the search; frozen parts have no trainable parameters, and
    the built-in bases and the correction module give each of theirs a gradient.
    """
    return isinstance(model.base, S2M2Base) and any(p.requires_grad for p in model.base.parameters())


def training_module(model, head: ReconstructionHead | None, dist_info: DistInfo, device: torch.device) -> nn.Module:
    """The module each step calls: the model (with the masked-modelling head), DDP-wrapped under torchrun."""
    train_model = StudentWithHead(model, head) if head is not None else model
    if dist_info.enabled:
        # frozen parts have requires_grad=False, so DDP neither waits for nor reduces them
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=may_leave_parameters_unused(model))
    return train_model


# ------------------------------------------------------------------------------ the whole set-up
@dataclass
class RunSetup:
    """What a stage's loop starts from (built by :func:`set_up`)."""

    stage: StageConfig
    out_dir: Path
    device: torch.device
    dist_info: DistInfo
    amp_dtype: torch.dtype | None
    log: Callable[[str], None]  # silent on all ranks but 0
    data: TrainingData
    model: nn.Module
    start: Start
    feasibility: dict | None
    head: ReconstructionHead | None
    teacher: EMATeacher | None
    optimiser: Optimiser
    counters: StepCounters
    best_score: float = math.inf
    val_metrics: dict | None = None

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.ckpt"


def set_up(cfg: TrainConfig, log: Callable[[str], None]) -> RunSetup:
    """Check the options, open the data, build and prepare the model and its optimiser (see module doc)."""
    stage = resolve_stage(cfg)
    out_dir = Path(cfg.run.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PolstereoError(f"{out_dir}: exists and is not a directory; --out names a run directory")
    dist_info, device = init_distributed(resolve_device(cfg.run.device))
    if not dist_info.is_main:
        log = lambda msg: None  # noqa: E731  (one voice: rank 0)
    amp_dtype = resolve_amp(cfg.run.amp, device)
    check_options(cfg)
    torch.manual_seed(cfg.run.seed)
    data = open_training_data(cfg, dist_info.world_size)
    start = starting_point(cfg, stage, out_dir / "last.ckpt")
    model = prepare_model(start.model, cfg, stage, data.color_channels, resuming=start.resume is not None).to(device)
    if tuple(model.angles_deg) != tuple(data.angles_deg):
        model.angles_deg = tuple(data.angles_deg)
    feasibility = start.resume.get("feasibility") if start.resume is not None else None
    if stage.feasibility_gate and start.resume is None:
        feasibility = feasibility_gate(model, cfg, data.val_reader or open_dataset(data.files[0]), device, log)
    head = reconstruction_head(cfg, model, data.color_channels, device)
    trainable = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    if not trainable:
        raise PolstereoError(f"stage {stage.name}: nothing to train")
    optimiser = make_optimiser(trainable, cfg, stage, data.plan.total_steps, device, amp_dtype)
    teacher = make_teacher(cfg, model, start.resume)
    setup = RunSetup(stage, out_dir, device, dist_info, amp_dtype, log, data, model, start, feasibility, head,
                     teacher, optimiser, StepCounters())
    if start.resume is not None:
        _restore(setup, start.resume)
    return setup


def _restore(setup: RunSetup, payload: dict) -> None:
    """Continue from ``last.ckpt``: optimiser, RNG, head, counters, best score, last validation."""
    opt, path, total = setup.optimiser, setup.last_path, setup.data.plan.total_steps
    opt.optimizer.load_state_dict(payload["optimizer"])
    opt.scheduler.load_state_dict(payload["scheduler"])
    if payload.get("scaler"):
        opt.scaler.load_state_dict(payload["scaler"])
    restore_rng(payload.get("rng", {}))
    if setup.head is not None:
        if "mim_head" not in payload:
            raise PolstereoError(f"--resume: {path} was trained without --mask-ratio")
        setup.head.load_state_dict(payload["mim_head"])
    global_batch = setup.data.plan.global_batch
    saved_batch = int(payload.get("global_batch", global_batch))
    if saved_batch != global_batch:
        raise PolstereoError(f"--resume: the run used a global batch of {saved_batch} "
                             f"(batch size x processes); this one has {global_batch}")
    setup.counters = StepCounters(step=int(payload["step"]), skipped=int(payload.get("skipped_steps", 0)),
                                  overflow_steps=int(payload.get("overflow_steps", 0)))
    setup.best_score = float(payload.get("best_score", math.inf))
    setup.val_metrics = payload.get("val_metrics")
    setup.log(f"resuming stage {setup.stage.name} at step {setup.counters.step}/{total} from {path}")
    if setup.counters.step >= total:
        setup.log("run already complete")
