"""Training commands: ``adapt`` (stage A), ``learn-pol`` (stage B), ``finetune`` (stage C).

The three commands share every option; the stage table
(:mod:`polstereo.training.stages`) is what differs. Each is a thin layer that fills a
:class:`~polstereo.training.trainer.TrainConfig` and calls ``train``.
"""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.cli.common import (SizeCommand, config_defaults, emit_json, json_option, positive_pixels, quiet_option,
                                  size_option)
from polstereo.evaluation.feasibility import FEASIBILITY_STATISTICS
from polstereo.models.full import BASE_INPUTS, WARP_SOURCES
from polstereo.training.config import TrainConfig
from polstereo.training.schedules import DECAY_METHODS
from polstereo.training.stages import STAGES, StageConfig

_PATH = click.Path(path_type=Path)
DEFAULTS = config_defaults(TrainConfig)  # every option's default is its TrainConfig field's


def _options(func):
    options = [
        click.option("--init", default=None, help="Starting weights: a polstereo checkpoint, official S2M2 "
                     "weights (with --model s2m2-S|M|L|XL), or 'none' [stage A default: none]."),
        click.option("--train", "train_files", multiple=True, required=True, type=_PATH,
                     help="Training HDF5 file, or a quoted glob of shards ('data/train-*.h5': one dataset); "
                          "repeat for a mixture (see --dataset-steps)."),
        click.option("--dataset-steps", multiple=True, type=click.IntRange(1),
                     help="Steps drawn from each --train file, in order (default: --steps split evenly)."),
        click.option("--dataset-order", type=click.Choice(["sequential", "shuffle"]), default=DEFAULTS["dataset_order"],
                     show_default=True, help="Train on the files one after the other, or interleave the steps."),
        click.option("--val", type=_PATH, default=None, help="Validation HDF5 file (full images), or a quoted glob of shards."),
        click.option("--out", required=True, type=_PATH, help="Run directory: last.ckpt, best.ckpt, metrics.jsonl, config.yaml."),
        click.option("--model", default=DEFAULTS["model"], show_default=True, callback=_model_name,
                     help="Base model size for --init none (tiny, small, base), or s2m2-S|M|L|XL with S2M2 weights "
                          "(s2m2 = s2m2-S). A polstereo checkpoint as --init brings its own model: leave --model out."),
        click.option("--max-correction", type=float, default=None, callback=positive_pixels, metavar="PX",
                     help="Bound of the correction in pixels [default: the checkpoint's, 4]."),
        click.option("--correction-search", type=float, default=None, callback=_search_radius, metavar="PX",
                     help="Stage B: give the new correction module a cost volume of polarization and intensity "
                          "disagreement at base + k for |k| <= PX (step 2 px; 0 = plain pol_diff) "
                          "[default: 0]."),
        click.option("--correction-context-stride", type=int, default=None, callback=_context_stride,
                     metavar="2|4",
                     help="Stage B: resolution of the new correction module's context blocks, 1/2 or 1/4 "
                          "[default: 2]."),
        click.option("--correction-context", type=click.Choice(["dilated", "unet"]), default=None,
                     help="Stage B: the new correction module's context: dilated blocks at 1/2 (or "
                          "--correction-context-stride 4), or an encoder-decoder down to 1/16 that spans "
                          "whole objects [default: dilated]."),
        click.option("--correction-shape", is_flag=True, default=None,
                     help="Stage B: the new correction module also takes the one-view shape cues (DoLP, "
                          "AoLP as 4φ and 2φ, zenith, the base's gradient and its consistency with the "
                          "AoLP; docs/models.md)."),
        click.option("--correction-integrate", is_flag=True, default=None,
                     help="Stage B: the new correction module also predicts a slope field and integrates it "
                          "into a surface (a screened Poisson solve over ~32 px, learned; docs/models.md)."),
        click.option("--base-input", type=click.Choice(BASE_INPUTS), default=None,
                     help="Stage A: what the base model matches: the intensity S0/2; (early fusion) "
                          "intensity + normalized Stokes in its three input channels; or (polarization-adapter, "
                          "a warm start) the intensity plus the residual of a small polarization network that "
                          "starts at zero, so the first step is exactly the --init base; or (polarization-volume, "
                          "a warm start for the built-in sizes) the intensity, and in the refinement a second "
                          "correlation volume from a polarization encoder behind a gate that starts at zero "
                          "[default: the checkpoint's, intensity]."),
        click.option("--shape-weight", type=click.FloatRange(0), default=DEFAULTS["shape_weight"], show_default=True,
                     help="Weight of the label-free shape-consistency loss: the DoLP-weighted "
                          "sin²(2(AoLP − azimuth of ∇d)) of the output (docs/metrics.md); any stage, "
                          "also where ground truth is missing (0 = off)."),
        click.option("--shape-min-dolp", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS["shape_min_dolp"],
                     show_default=True, help="Pixels less polarized than this do not count in that loss."),
        click.option("--steps", type=click.IntRange(1), default=DEFAULTS["steps"], show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS["batch_size"], show_default=True),
        click.option("--lr", type=float, default=None, help="Peak learning rate [default: the stage's]."),
        click.option("--min-lr", type=float, default=DEFAULTS["min_lr"], show_default=True),
        click.option("--lr-decay-method", type=click.Choice(DECAY_METHODS), default=DEFAULTS["lr_decay_method"], show_default=True),
        click.option("--warmup-steps", type=click.IntRange(0), default=DEFAULTS["warmup_steps"], show_default=True),
        click.option("--decay-after-steps", type=click.IntRange(0), default=DEFAULTS["decay_after_steps"], show_default=True),
        click.option("--weight-decay", type=float, default=DEFAULTS["weight_decay"], show_default=True),
        click.option("--clip-grad-norm", type=float, default=DEFAULTS["clip_grad_norm"], show_default=True, help="0 disables."),
        size_option("--crop-size", order="HW", minimum=8, default=DEFAULTS["crop_size"],
                    help="Training crop size, pixels."),
        click.option("--scale-range", nargs=2, type=float, default=DEFAULTS["scale_range"], show_default=True, metavar="MIN MAX"),
        click.option("--vflip-prob", type=click.FloatRange(0, 1), default=DEFAULTS["vflip_prob"], show_default=True,
                     help="Vertical flips (polarizer angles mirrored)."),
        click.option("--photometric/--no-photometric", default=DEFAULTS["photometric"], show_default=True,
                     help="Random gain/offset, identical across the angle images of a view."),
        click.option("--max-disparity", type=float, default=None,
                     help="Ignore ground truth above this in the loss [default: crop width]."),
        click.option("--transparent-weight", type=float, default=DEFAULTS["transparent_weight"], show_default=True,
                     help="Extra loss weight on transparent pixels."),
        click.option("--robust-scale", type=click.FloatRange(0, min_open=True), default=None, metavar="PX",
                     help="Robust loss: errors beyond PX pixels count logarithmically (scale·log(1+|e|/scale)), "
                          "so large glass errors do not swamp the rest [default: plain L1]."),
        click.option("--gamma", type=click.FloatRange(0, 1), default=DEFAULTS["gamma"], show_default=True,
                     help="Sequence-loss decay: estimate i of n weighs gamma^(n-1-i)."),
        click.option("--iters", type=click.IntRange(1), default=None, help="Base refinement iterations."),
        click.option("--workers", type=click.IntRange(0), default=DEFAULTS["workers"], show_default=True),
        click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True),
        click.option("--val-every", type=click.IntRange(0), default=DEFAULTS["val_every"], show_default=True),
        click.option("--val-samples", type=click.IntRange(1), default=None, help="Validate on the first N samples."),
        click.option("--save-every", type=click.IntRange(0), default=DEFAULTS["save_every"], show_default=True),
        click.option("--log-every", type=click.IntRange(1), default=DEFAULTS["log_every"], show_default=True),
        click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from last.ckpt."),
        click.option("--force", is_flag=True, help="Start despite a wrong lineage or an infeasible stage B."),
        click.option("--device", default=DEFAULTS["device"], show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default=DEFAULTS["amp"], show_default=True,
                     help="Mixed precision (auto: bf16 on GPUs that support it, off on CPUs)."),
        click.option("--deterministic", is_flag=True, help="Deterministic algorithms (reproducible, slower)."),
        click.option("--feasibility-statistic", type=click.Choice(FEASIBILITY_STATISTICS), default=DEFAULTS["feasibility_statistic"],
                     show_default=True, help="Base error statistic compared with --max-correction (stage B gate)."),
        click.option("--mask-ratio", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS["mask_ratio"], show_default=True,
                     help="Masked image modelling: share of patches blanked in the student's views (0.4 as in "
                          "MaDis-Stereo; 0 = off)."),
        click.option("--mask-patch", type=click.IntRange(1), default=DEFAULTS["mask_patch"], show_default=True,
                     help="Side of a masked patch, pixels."),
        click.option("--mim-weight", type=float, default=DEFAULTS["mim_weight"], show_default=True,
                     help="Weight of the reconstruction loss on masked pixels."),
        click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
                     help="EMA teacher decay [default: 0.999 with --mask-ratio, else no teacher]."),
        click.option("--pseudo-weight", type=float, default=DEFAULTS["pseudo_weight"], show_default=True,
                     help="Weight of the teacher's pseudo-disparities where ground truth is missing."),
        click.option("--warp-source", type=click.Choice(WARP_SOURCES), default=None,
                     help="Override the stage's pol_diff warp disparity (for ablations; B: gt, C: pred)."),
        click.option("--tensorboard", is_flag=True,
                     help="Also write TensorBoard scalars and validation pictures to --out/tensorboard."),
        click.option("--stop-after", type=click.IntRange(1), default=None,
                     help="End this invocation after step N (resume later with --resume)."),
        quiet_option,
        json_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _model_name(ctx, param, value):
    """A name the model registry knows, as its canonical spelling (``s2m2`` -> ``s2m2-S``)."""
    from polstereo.errors import PolstereoError
    from polstereo.models.registry import base_name, base_spec

    try:
        return base_name(base_spec(value))
    except PolstereoError as err:
        raise click.BadParameter(str(err)) from None


def _search_radius(ctx, param, value):
    if value is not None and not (value == 0 or 2.0 <= value <= 64.0):
        raise click.BadParameter(f"{value} is not 0 (off) or a radius from 2 to 64 px (the step is 2 px)")
    return value


def _context_stride(ctx, param, value):
    if value is not None and value not in (2, 4):
        raise click.BadParameter(f"{value} is not 2 or 4")
    return value


def _make_command(stage: StageConfig) -> click.Command:
    @click.command(stage.command, cls=SizeCommand, help=f"Stage {stage.name}: {stage.title}.\n\nTrains: "
                   f"{' + '.join(stage.trainable)}"
                   + (f"; frozen: {', '.join(stage.frozen)}" if stage.frozen else "")
                   + (f"; pol_diff warped with the {'ground-truth' if stage.warp_source == 'gt' else 'predicted'} "
                      "disparity" if stage.warp_source else "")
                   + (f". Needs a stage {stage.requires} checkpoint as --init." if stage.requires else "."))
    @_options
    def command(train_files, dataset_steps, json_out, **options):
        from polstereo.training.trainer import TrainConfig, train

        cfg = TrainConfig(stage=stage.name, train=list(train_files),
                          dataset_steps=list(dataset_steps) or None, **options)
        log = (lambda msg: None) if options["quiet"] else (lambda msg: click.echo(msg, err=True))
        result = train(cfg, log=log)
        emit_json({"stage": stage.name, "out": str(result.out), "steps_done": result.steps_done,
                   "skipped_steps": result.skipped_steps, "best_score": result.best_score,
                   "last_checkpoint": str(result.last_checkpoint),
                   "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
                   "val_metrics": result.val_metrics, "feasibility": result.feasibility}, json_out)

    return command


adapt_cmd = _make_command(STAGES["A"])
learn_pol_cmd = _make_command(STAGES["B"])
finetune_cmd = _make_command(STAGES["C"])
