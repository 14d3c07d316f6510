"""One optimisation step of a stage: masking, forward (and teacher), loss, update.

:class:`TrainStep` runs step ``counters.step`` on one batch already on its device:
it blanks patches of the views for masked image modelling, runs the student (and the
EMA teacher on the unmasked views), sums the stage's loss terms, skips the update when
the loss is not finite, steps the optimizer through the grad scaler, lets the teacher
follow the student, and advances the learning-rate schedule. The trainer calls it once
per global step; a test calls it on a hand-made batch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.polar.features import intensity_image
from polstereo.polar.shape import shape_loss
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG
from polstereo.training.config import TrainConfig
from polstereo.training.distributed import DistInfo, all_reduce_sum
from polstereo.training.losses import masked_l1, pixel_weights, sequence_loss
from polstereo.training.mim import EMATeacher, mask_views, patch_mask
from polstereo.training.schedules import Schedule, make_scheduler
from polstereo.training.stages import StageConfig

MAX_CONSECUTIVE_NONFINITE = 20


def stage_loss(out: dict, batch: dict, stage: StageConfig, cfg: TrainConfig, crop_w: int,
               angles_deg=DEFAULT_ANGLES_DEG) -> torch.Tensor:
    """The stage's supervised loss terms plus the weighted shape loss, a scalar.

    ``out`` is the model's output, ``batch`` holds ``disparity``, ``valid``,
    ``transparent``, ``inside`` ``(B, 1, H, W)`` and ``left`` ``(B, A, C, H, W)``;
    ground truth above ``--max-disparity`` (default: the crop width ``crop_w``, pixels)
    does not count.
    """
    gt, optim = batch["disparity"], cfg.optim
    max_disp = cfg.data.max_disparity if cfg.data.max_disparity is not None else float(crop_w)
    weight = pixel_weights(batch["valid"], batch["transparent"], gt, max_disp, optim.transparent_weight)
    total = gt.new_zeros(())
    if "sequence" in stage.loss_terms:
        total = total + sequence_loss(out["disparities"], gt, weight, optim.gamma, optim.robust_scale)
    if "final" in stage.loss_terms and out.get("correction") is not None:
        total = total + masked_l1(out["disparity"], gt, weight, optim.robust_scale)
    if optim.shape_weight:
        # label-free: every pixel inside the image whose polarization is reliable, labeled or not
        total = total + optim.shape_weight * shape_loss(out["disparity"], batch["left"], angles_deg,
                                                        mask=batch["inside"], min_dolp=optim.shape_min_dolp)
    return total


@dataclass
class Optimiser:
    """What updates the weights: AdamW over ``parameters``, its schedule and the grad scaler."""

    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def make_optimiser(parameters: list[nn.Parameter], cfg: TrainConfig, stage: StageConfig, total_steps: int,
                   device: torch.device, amp_dtype: torch.dtype | None) -> Optimiser:
    """AdamW at ``--lr`` (default: the stage's) on the run's schedule; the scaler only for fp16."""
    optim = cfg.optim
    peak_lr = optim.lr if optim.lr is not None else stage.lr
    optimizer = torch.optim.AdamW(parameters, lr=peak_lr, weight_decay=optim.weight_decay)
    schedule = Schedule(peak_lr, total_steps, optim.min_lr, optim.warmup_steps, optim.decay_after_steps,
                        optim.lr_decay_method)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return Optimiser(parameters, optimizer, make_scheduler(optimizer, schedule), scaler)


@dataclass
class StepCounters:
    """Where a run stands: steps done, steps skipped for a non-finite loss, fp16 overflows."""

    step: int = 0
    skipped: int = 0
    overflow_steps: int = 0  # updates the grad scaler dropped because fp16 gradients overflowed


class TrainStep:
    """One optimisation step per call; counts steps, skipped steps and fp16 overflows.

    Args:
        model: the PolStereoModel (the teacher follows it).
        stage, cfg: what to train and the run's options (masking, loss weights, ``iters``,
            ``clip_grad_norm``).
        optimiser: from :func:`make_optimiser`.
        angles_deg: polarizer angles of the data, degrees.
        amp_dtype: autocast dtype, or None for full precision.
        train_model: the module to call: ``model``, or with ``--mask-ratio`` a
            ``StudentWithHead``, possibly DDP-wrapped (default ``model``).
        teacher: the EMA teacher, or None.
        dist_info: the process group; ranks agree on skipping a step.
        counters: where a resumed run stands (default: a fresh run).
        loss: the stage's loss, :func:`stage_loss` unless replaced.
        max_consecutive_nonfinite: this many non-finite losses in a row end the run.

    ``updating`` is True from the moment an update may have touched the weights until
    the step counter has caught up with it: an interruption then leaves them inconsistent.
    """

    def __init__(self, model: nn.Module, stage: StageConfig, cfg: TrainConfig, optimiser: Optimiser, *,
                 angles_deg, amp_dtype: torch.dtype | None = None, train_model: nn.Module | None = None,
                 teacher: EMATeacher | None = None, dist_info: DistInfo = DistInfo(),
                 counters: StepCounters | None = None, loss: Callable[..., torch.Tensor] = stage_loss,
                 max_consecutive_nonfinite: int = MAX_CONSECUTIVE_NONFINITE):
        self.model, self.stage, self.cfg, self.optimiser = model, stage, cfg, optimiser
        self.angles_deg, self.amp_dtype = angles_deg, amp_dtype
        self.train_model = train_model if train_model is not None else model
        self.teacher, self.dist_info = teacher, dist_info
        self.counters = counters if counters is not None else StepCounters()
        self.loss, self.max_consecutive_nonfinite = loss, max_consecutive_nonfinite
        self.consecutive_nonfinite = 0
        self.updating = False

    def __call__(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Run one step on ``batch`` (device tensors in [0, 1]); returns ``(loss, model output)``.

        ``batch``: ``left``, ``right`` ``(B, A, C, H, W)``; ``disparity`` ``(B, 1, H, W)``
        pixels; ``valid``, ``transparent``, ``inside`` ``(B, 1, H, W)`` bool.
        """
        left, right, mask_left = self._views(batch)
        out, pseudo = self._forward(batch, left, right)
        loss = self._total_loss(out, pseudo, batch, mask_left)
        self._update(loss)
        return loss, out

    def _views(self, batch: dict):
        """The student's views and the left mask (None without masked image modelling)."""
        left, right = batch["left"], batch["right"]
        mim = self.cfg.mim
        if mim.mask_ratio <= 0:
            return left, right, None
        size, n, device = left.shape[-2:], left.shape[0], left.device
        # derived from the step, so a resumed run masks exactly what an uninterrupted one would
        mask_seed = (self.cfg.run.seed * 1_000_003 + self.counters.step) * 64 + self.dist_info.rank * 2
        mask_left = patch_mask(n, size, mim.mask_ratio, mim.mask_patch, mask_seed, device)
        mask_right = patch_mask(n, size, mim.mask_ratio, mim.mask_patch, mask_seed + 1, device)
        return mask_views(left, mask_left), mask_views(right, mask_right), mask_left

    def _forward(self, batch: dict, left: torch.Tensor, right: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
        """The student's output on its views and the teacher's disparity on the unmasked ones."""
        stage, iters, device_type = self.stage, self.cfg.model.iters, batch["left"].device.type
        gt_for_warp = torch.where(batch["valid"], batch["disparity"], torch.full_like(batch["disparity"], math.nan))
        with torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = self.train_model(left, right, angles_deg=self.angles_deg, iters=iters,
                                   gt_disparity=gt_for_warp if stage.warp_source == "gt" else None,
                                   warp_source=stage.warp_source or "pred")
            pseudo = None
            if self.teacher is not None:
                pseudo = self.teacher(batch["left"], batch["right"], angles_deg=self.angles_deg, iters=iters,
                                      warp_source="pred")["disparity"].float()
        return out, pseudo

    def _total_loss(self, out: dict, pseudo: torch.Tensor | None, batch: dict,
                    mask_left: torch.Tensor | None) -> torch.Tensor:
        """The stage loss, plus masked reconstruction and the teacher's pseudo labels where used."""
        cfg = self.cfg
        loss = self.loss(out, batch, self.stage, cfg, batch["left"].shape[-1], self.angles_deg)
        if mask_left is not None:
            target = intensity_image(batch["left"], self.angles_deg)
            weight = (mask_left & batch["inside"]).expand_as(target).float()  # not the crop padding
            loss = loss + cfg.mim.mim_weight * masked_l1(out["reconstruction"], target, weight)
        if pseudo is not None and cfg.mim.pseudo_weight:
            # the teacher supervises only where ground truth is missing, inside the image
            unlabeled = (~batch["valid"] & batch["inside"]).float() * torch.isfinite(pseudo).float()
            loss = loss + cfg.mim.pseudo_weight * masked_l1(out["disparity"], torch.nan_to_num(pseudo), unlabeled)
        return loss

    def _update(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step for a finite loss, a counted skip otherwise; then the schedule."""
        optimizer = self.optimiser.optimizer
        optimizer.zero_grad(set_to_none=True)
        self.updating = True
        if self._all_finite(loss):
            self.consecutive_nonfinite = 0
            self._apply(loss)
        else:
            self._skip()
        with warnings.catch_warnings():
            # after a skipped (non-finite or fp16-overflow) update torch warns that the scheduler
            # stepped without the optimizer: intended here, the schedule follows the step count
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.optimiser.scheduler.step()
        self.counters.step += 1
        self.updating = False

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (one rank skipping alone would hang the others)."""
        finite = bool(torch.isfinite(loss))
        if self.dist_info.enabled:
            flag = torch.tensor([0.0 if finite else 1.0], device=loss.device)
            finite = float(all_reduce_sum(flag, self.dist_info)) == 0
            if not finite:
                (loss * 0).backward()  # let DDP finish this iteration's reduction
                self.optimiser.optimizer.zero_grad(set_to_none=True)
        return finite

    def _skip(self) -> None:
        """Count a skipped step; too many in a row end the run (PolstereoError)."""
        self.counters.skipped += 1
        self.consecutive_nonfinite += 1
        if self.consecutive_nonfinite >= self.max_consecutive_nonfinite:
            raise PolstereoError(f"{self.consecutive_nonfinite} consecutive non-finite losses at step "
                                 f"{self.counters.step}; lower --lr, use --amp bf16 or off, or check the data")

    def _apply(self, loss: torch.Tensor) -> None:
        """Scaled backward, gradient clipping, optimizer step; the teacher follows the student."""
        opt, cfg = self.optimiser, self.cfg
        opt.scaler.scale(loss).backward()
        if cfg.optim.clip_grad_norm:
            opt.scaler.unscale_(opt.optimizer)
            torch.nn.utils.clip_grad_norm_(opt.parameters, cfg.optim.clip_grad_norm)
        scale_before = opt.scaler.get_scale() if opt.scaler.is_enabled() else None
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        if scale_before is not None and opt.scaler.get_scale() < scale_before:
            self.counters.overflow_steps += 1  # fp16 gradients overflowed: the scaler skipped this update
        if self.teacher is not None:
            self.teacher.update(self.model)
