"""The options of a training run and what it returns.

:class:`TrainConfig` is what ``polstereo adapt``, ``learn-pol`` and ``finetune`` fill
from their options (and a test builds directly); :class:`TrainResult` is what
:func:`polstereo.training.trainer.train` returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


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
    # what the base matches (stage A may change it): "intensity", "polarization" (early fusion:
    # intensity + Stokes), "polarization-adapter" (intensity + a zero-initialised adapter's residual) or
    # "polarization-volume" (a gated second correlation volume of polarization features)
    base_input: str | None = None
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
    robust_scale: float | None = None  # px: log-L1 beyond it (losses.robust_error); None = plain L1
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
    """What a run reports: its directory, step counts, last validation, checkpoints and train records."""

    out: Path
    steps_done: int
    skipped_steps: int
    val_metrics: dict | None
    best_score: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    feasibility: dict | None = None
    log: list[dict] = field(default_factory=list)
