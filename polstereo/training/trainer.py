"""One trainer for every stage; the stage table decides what it trains and how.

``train(TrainConfig.from_flat(stage="A", ...))`` is what ``polstereo adapt`` runs; ``learn-pol``
and ``finetune`` differ only in ``stage``. A run is set up (:mod:`.setup`: the model
from ``--init`` with its lineage checked, frozen per stage, stage B gated on
feasibility, a deterministic data plan), then loops over the plan one optimisation step
at a time (:mod:`.step`), validating and saving atomic checkpoints (``last.ckpt``,
``best.ckpt``) as it goes and recording it all (:mod:`.logbook`). ``run.resume``
continues from ``last.ckpt`` and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from pathlib import Path
from typing import Callable, NoReturn

import torch
from torch.utils.data import DataLoader

from polstereo.data.loader import PlanSampler, to_device
from polstereo.errors import PolstereoError
from polstereo.evaluation.evaluate import evaluate_model
from polstereo.interrupts import ctrl_c_requests_stop
from polstereo.io.atomic import removed_if_left_empty
from polstereo.io.lock import output_lock
from polstereo.training.checkpoint import rng_state, save_checkpoint
from polstereo.training.config import TrainConfig, TrainResult
from polstereo.training.distributed import (all_reduce_sum, barrier, cleanup, launched_as_main,
                                           release_after_error)
from polstereo.training.logbook import Logbook, brief, val_score
from polstereo.training.setup import RunSetup, set_up, training_module
from polstereo.training.step import MAX_CONSECUTIVE_NONFINITE, TrainStep, stage_loss

__all__ = ["TrainConfig", "TrainResult", "train"]


def train(cfg: TrainConfig, log: Callable[[str], None] = print, *,
          loss: Callable[..., torch.Tensor] = stage_loss,
          max_consecutive_nonfinite: int = MAX_CONSECUTIVE_NONFINITE) -> TrainResult:
    """Run one stage; see the module docstring. Raises PolstereoError on user errors.

    The first Ctrl-C asks the loop to stop at the end of the current step (it saves
    ``last.ckpt`` there and raises PolstereoError with exit code 130); a second one
    interrupts at once. Global torch settings changed for the run are restored.

    ``loss(out, batch, stage, cfg, crop_w)``: a step's loss (:func:`~.step.stage_loss`, the
    stage's); ``max_consecutive_nonfinite``: this many non-finite losses in a row end the run.
    """
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    with ctrl_c_requests_stop() as stop:
        try:
            if cfg.run.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            # one writer per run folder, taken before anything looks at it; only rank 0 writes
            with output_lock(cfg.run.out, "run folder") if launched_as_main() else contextlib.nullcontext():
                with removed_if_left_empty(cfg.run.out):  # a run that fails at its start leaves no empty --out
                    return _train(cfg, log, stop, loss, max_consecutive_nonfinite)
        except BaseException as err:
            release_after_error(err)
            raise
        finally:
            torch.use_deterministic_algorithms(deterministic_before)


def _train(cfg: TrainConfig, log: Callable[[str], None], stop: dict, loss: Callable[..., torch.Tensor],
           max_consecutive_nonfinite: int) -> TrainResult:
    """Set up, loop (validating and saving on schedule), finish: the same for every stage."""
    run = _Run(cfg, set_up(cfg, log), loss, max_consecutive_nonfinite)
    run.start()
    run.loop(stop)
    return run.finish()


class _Run:
    """A stage's run once set up: its loop, validations, checkpoints and result."""

    def __init__(self, cfg: TrainConfig, setup: RunSetup, loss: Callable[..., torch.Tensor],
                 max_consecutive_nonfinite: int):
        self.cfg, self.setup = cfg, setup
        self.loss, self.max_consecutive_nonfinite = loss, max_consecutive_nonfinite
        self.counters = setup.counters  # the step updates them in place
        self.start_step = setup.counters.step
        self.best_score, self.val_metrics = setup.best_score, setup.val_metrics
        total = setup.data.plan.total_steps
        self.end_step = total if cfg.run.stop_after is None else min(total, cfg.run.stop_after)
        self.entry = {"stage": setup.stage.name, "command": setup.stage.command, "init": setup.start.init_desc,
                      "train": [str(p) for p in setup.data.files], "dataset_steps": list(setup.data.steps_per),
                      "val": str(cfg.data.val) if cfg.data.val else None, "steps": total}

    def start(self) -> None:
        """Make the run directory, its logbook, the data loader and the step; announce the plan."""
        s, cfg, plan = self.setup, self.cfg, self.setup.data.plan
        s.out_dir.mkdir(parents=True, exist_ok=True)
        self.book = Logbook(s.out_dir, s.log, s.dist_info.is_main, cfg.run.tensorboard, cfg.run.log_every,
                            cfg.run.quiet)
        sampler = PlanSampler(plan, start_step=self.start_step, rank=s.dist_info.rank,
                              world_size=s.dist_info.world_size)
        self.loader = DataLoader(s.data.mixture, batch_size=cfg.data.batch_size, sampler=sampler,
                                 num_workers=cfg.data.workers,
                                 pin_memory=s.device.type == "cuda", persistent_workers=False)
        self.runner = TrainStep(s.model, s.stage, cfg, s.optimiser, angles_deg=s.data.angles_deg,
                                amp_dtype=s.amp_dtype, train_model=training_module(s.model, s.head, s.dist_info,
                                                                                   s.device),
                                teacher=s.teacher, dist_info=s.dist_info, counters=self.counters, loss=self.loss,
                                max_consecutive_nonfinite=self.max_consecutive_nonfinite)
        s.log(f"stage {s.stage.name} ({s.stage.command}): {plan.total_steps} steps, global batch {plan.global_batch} "
              f"({cfg.data.batch_size} x {s.dist_info.world_size} process{'es' if s.dist_info.enabled else ''}), "
              f"device {s.device}" + (f", amp {str(s.amp_dtype).split('.')[-1]}" if s.amp_dtype is not None else ""))
        s.model.train()
        self.book.begin(self.start_step, self.end_step, plan.global_batch, s.stage.command)

    def loop(self, stop: dict) -> None:
        """Step through the plan up to ``--stop-after``, validating and saving on schedule.

        Stops at a step boundary when ``stop["requested"]`` (the first Ctrl-C): saves and
        raises PolstereoError with exit code 130.
        """
        run, book, counters = self.cfg.run, self.book, self.counters
        total, last_path = self.setup.data.plan.total_steps, self.setup.last_path
        try:
            for batch in book.timed(self.loader):
                if counters.step >= self.end_step:
                    break
                loss, out = self.runner(to_device(batch, self.setup.device))
                step = counters.step
                book.step_done(counters, loss, self.setup.optimiser.optimizer.param_groups[0]["lr"], out,
                               self.val_metrics)
                if run.val_every and step % run.val_every == 0 and step < total:
                    self.validate(step)
                if run.save_every and step % run.save_every == 0 and step < self.end_step:
                    self.save(last_path, step, complete=False)
                if stop["requested"] and step < self.end_step:
                    raise KeyboardInterrupt
        except PolstereoError as err:
            book.close_bar()
            raise PolstereoError(_worker_message(str(err)), err.exit_code) from None
        except KeyboardInterrupt:
            book.close_bar()
            self._interrupted()
        book.close_bar()

    def _interrupted(self) -> NoReturn:
        """Save at a step boundary (mid-update: point to the last save); exit code 130 either way."""
        step, last_path = self.counters.step, self.setup.last_path
        if self.runner.updating:
            # weights, optimizer and step counter disagree mid-update: keep the last consistent save
            raise PolstereoError(f"interrupted during step {step + 1}; {last_path} (if any) holds the last "
                                 "saved step, continue with --resume", 130) from None
        self.save(last_path, step, complete=False)
        raise PolstereoError(f"interrupted at step {step}; {last_path} saved, continue with --resume", 130) from None

    def validate(self, step: int) -> None:
        """Evaluate on ``--val`` (sharded over ranks), record it, and keep best.ckpt on a new best."""
        s = self.setup
        if s.data.val_reader is None:
            return
        pictures = {}

        def keep_first(batch, out) -> None:
            if not pictures:
                pictures.update(batch=batch, out={k: out[k] for k in ("disparity", "correction") if k in out})

        dist = s.dist_info
        res = evaluate_model(s.model, s.data.val_reader, s.device, iters=self.cfg.model.iters,
                             max_samples=self.cfg.data.val_samples,
                             on_sample=keep_first if self.book.board is not None else None,
                             autocast_dtype=s.amp_dtype, shard=(dist.rank, dist.world_size),
                             reduce=(lambda t: all_reduce_sum(t, dist)) if dist.enabled else None)
        self.val_metrics = {"final": res.final, "base": res.base, "saturation_fraction": res.saturation_fraction,
                            "step": step}
        score = val_score(self.val_metrics)
        self.book.validation(step, res, self.val_metrics, pictures, s.model)
        if score < self.best_score:
            self.best_score = score
            self.save(s.best_path, step, complete=False)

    def save(self, path: Path, step: int, complete: bool) -> None:
        """Write checkpoint ``path`` with everything ``--resume`` needs (rank 0 only)."""
        s, cfg = self.setup, self.cfg
        if not s.dist_info.is_main:
            return
        # config.yaml with the first checkpoint, not before: a run that fails at its start leaves none
        self.book.before_checkpoint(cfg.plain(omit=TrainConfig.INVOCATION_ONLY), last=path == s.last_path)
        record = dict(self.entry, steps_done=step, complete=complete, metrics=brief(self.val_metrics),
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%S") if complete else None)
        opt = s.optimiser
        extra = {"ema_state_dict": s.teacher.model.state_dict(), "ema_decay": s.teacher.decay} if s.teacher else {}
        if s.head is not None:
            extra["mim_head"] = s.head.state_dict()
        save_checkpoint(path, s.model, stage=s.stage.name, lineage=s.start.lineage + [record],
                        train_config=cfg.plain(), step=step, optimizer=opt.optimizer.state_dict(),
                        scheduler=opt.scheduler.state_dict(),
                        scaler=opt.scaler.state_dict() if opt.scaler.is_enabled() else {}, rng=rng_state(),
                        val_metrics=self.val_metrics, best_score=self.best_score,
                        skipped_steps=self.counters.skipped, overflow_steps=self.counters.overflow_steps,
                        feasibility=s.feasibility, global_batch=s.data.plan.global_batch,
                        world_size=s.dist_info.world_size, **extra)

    def finish(self) -> TrainResult:
        """Validate and save the last step (unless nothing ran), leave the process group, report."""
        s, step, total = self.setup, self.counters.step, self.setup.data.plan.total_steps
        complete = step >= total
        if step > self.start_step:  # a --resume of a finished run changes nothing and rewrites nothing
            if complete and (self.val_metrics is None or self.val_metrics.get("step") != step):
                self.validate(step)
            self.save(s.last_path, step, complete=complete)
            if complete and s.data.val_reader is None:
                self.save(s.best_path, step, complete=True)  # nothing to choose by: the final weights
        self.book.close()
        if s.dist_info.enabled:
            # DDP's reducer frees the process group without dropping the GIL. Were it to hold the
            # last reference (after destroy_process_group), its destructor would wait for gloo's
            # worker threads while one of them waits for the GIL to free a finished collective's
            # tensors: a deadlock at exit (pytorch/pytorch#56297). Free the wrapper (in the step) first.
            del self.runner
            gc.collect()
        barrier(s.dist_info)
        cleanup(s.dist_info)
        s.log(f"stage {s.stage.name} ({s.stage.command}): {step}/{total} steps"
              f"{' (stopped early)' if not complete else ''}, {self.counters.skipped} skipped non-finite, "
              f"checkpoint {s.last_path}")
        return TrainResult(out=s.out_dir, steps_done=step, skipped_steps=self.counters.skipped,
                           val_metrics=self.val_metrics, best_score=None if math.isinf(self.best_score) else
                           self.best_score, last_checkpoint=s.last_path,
                           best_checkpoint=s.best_path if s.best_path.exists() else None,
                           feasibility=s.feasibility, log=self.book.history)


def _worker_message(message: str) -> str:
    """The original one-line message of a PolstereoError that a DataLoader worker re-raised here.

    torch wraps it as "Caught PolstereoError in DataLoader worker process 0. Original Traceback ...";
    the user needs the last line, not the worker's traceback.
    """
    if not message.startswith("Caught "):
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split("PolstereoError: ", 1)[-1]
