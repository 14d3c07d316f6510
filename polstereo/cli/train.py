"""Training commands: ``adapt`` (stage A), ``learn-pol`` (stage B), ``finetune`` (stage C).

The three commands share every option; the stage table
(:mod:`polstereo.training.stages`) is what differs. Each is a thin layer that fills a
:class:`~polstereo.training.config.TrainConfig` and calls ``train``. The options come in
one list per section of TrainConfig (``--help`` shows them under those headings); an
option's parameter is its field's flat name, so the section it lands in is the field's.
The correction module's switches are generated from :class:`CorrectionConfig`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from polstereo.cli.common import (SectionedCommand, config_defaults, emit_json, json_option, positive_pixels,
                                  quiet_option, size_option)
from polstereo.errors import PolstereoError
from polstereo.evaluation.feasibility import FEASIBILITY_STATISTICS
from polstereo.models.correction import CorrectionConfig
from polstereo.models.full import BASE_INPUTS, WARP_SOURCES
from polstereo.training.config import FLAT_PATHS, TrainConfig
from polstereo.training.schedules import DECAY_METHODS
from polstereo.training.stages import STAGES, StageConfig

_PATH = click.Path(path_type=Path)
DEFAULTS = config_defaults(TrainConfig)  # every option's default is its TrainConfig field's


def _model_name(ctx, param, value):
    """A name the model registry knows, as its canonical spelling (``s2m2`` -> ``s2m2-S``)."""
    from polstereo.models.registry import base_name, base_spec

    try:
        return base_name(base_spec(value))
    except PolstereoError as err:
        raise click.BadParameter(str(err)) from None


def _switch_option(f: dataclasses.Field):
    """The option of a :class:`CorrectionConfig` switch, from the field: its flag, help, type (a
    boolean is a flag), choices and default; a value the module (or the switch's own check)
    refuses is a usage error."""
    meta = f.metadata
    shown = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
    help = f"Stage B, a new correction module: {meta['help']}" + ("." if isinstance(f.default, bool) else
                                                                     f" [default: {shown}].")

    def check(ctx, param, value):
        if value is None:
            return None
        try:
            if meta["check"] is not None:
                meta["check"](value)
            CorrectionConfig(**{f.name: value})
        except PolstereoError as err:
            raise click.BadParameter(str(err)) from None
        return value

    if isinstance(f.default, bool):
        return click.option(meta["option"], is_flag=True, default=None, help=help)
    kind = click.Choice(meta["choices"]) if meta["choices"] else type(f.default)
    return click.option(meta["option"], type=kind, default=None, metavar=meta["metavar"], callback=check, help=help)


_DATA = [
    click.option("--train", multiple=True, required=True, type=_PATH,
                 help="Training HDF5 file, or a quoted glob of shards ('data/train-*.h5': one dataset); "
                      "repeat for a mixture (see --dataset-steps)."),
    click.option("--val", type=_PATH, default=None, help="Validation HDF5 file (full images), or a quoted glob of shards."),
    click.option("--dataset-steps", multiple=True, type=click.IntRange(1),
                 help="Steps drawn from each --train file, in order (default: --steps split evenly)."),
    click.option("--dataset-order", type=click.Choice(["sequential", "shuffle"]), default=DEFAULTS["dataset_order"],
                 show_default=True, help="Train on the files one after the other, or interleave the steps."),
    click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS["batch_size"], show_default=True),
    size_option("--crop-size", order="HW", minimum=8, default=DEFAULTS["crop_size"],
                help="Training crop size, pixels."),
    click.option("--scale-range", nargs=2, type=float, default=DEFAULTS["scale_range"], show_default=True, metavar="MIN MAX"),
    click.option("--vflip-prob", type=click.FloatRange(0, 1), default=DEFAULTS["vflip_prob"], show_default=True,
                 help="Vertical flips (polarizer angles mirrored)."),
    click.option("--photometric/--no-photometric", default=DEFAULTS["photometric"], show_default=True,
                 help="Random gain/offset, identical across the angle images of a view."),
    click.option("--max-disparity", type=float, default=None,
                 help="Ignore ground truth above this in the loss [default: crop width]."),
    click.option("--workers", type=click.IntRange(0), default=DEFAULTS["workers"], show_default=True),
    click.option("--val-samples", type=click.IntRange(1), default=None, help="Validate on the first N samples."),
]

_MODEL = [
    click.option("--model", default=DEFAULTS["model"], show_default=True, callback=_model_name,
                 help="Base model size for --init none (tiny, small, base), or s2m2-S|M|L|XL with S2M2 weights "
                      "(s2m2 = s2m2-S). A polstereo checkpoint as --init brings its own model: leave --model out."),
    click.option("--init", default=None, help="Starting weights: a polstereo checkpoint, official S2M2 "
                 "weights (with --model s2m2-S|M|L|XL), or 'none' [stage A default: none]."),
    click.option("--iters", type=click.IntRange(1), default=None, help="Base refinement iterations."),
    click.option("--base-input", type=click.Choice(BASE_INPUTS), default=None,
                 help="Stage A: what the base model matches: the intensity S0/2; (early fusion) "
                      "intensity + normalized Stokes in its three input channels; or (polarization-adapter, "
                      "a warm start) the intensity plus the residual of a small polarization network that "
                      "starts at zero, so the first step is exactly the --init base; or (polarization-volume, "
                      "a warm start for the built-in sizes) the intensity, and in the refinement a second "
                      "correlation volume from a polarization encoder behind a gate that starts at zero "
                      "[default: the checkpoint's, intensity]."),
    click.option("--max-correction", type=float, default=None, callback=positive_pixels, metavar="PX",
                 help="Bound of the correction in pixels [default: the checkpoint's, 4]."),
    click.option("--warp-source", type=click.Choice(WARP_SOURCES), default=None,
                 help="Override the stage's pol_diff warp disparity (for ablations; B: gt, C: pred)."),
    *[_switch_option(f) for f in dataclasses.fields(CorrectionConfig) if "option" in f.metadata],
    click.option("--new-correction", is_flag=True,
                 help="Stage B: train a new correction module (shaped by the options above) in place of the "
                      "--init checkpoint's, e.g. on a base trained with one."),
    click.option("--freeze", multiple=True, metavar="NAME",
                 help="Hold the parameters under NAME fixed in this run, a prefix of the model's parameter "
                      "names in whole dotted parts (base.update: the base's refinement; base.encoder.trunk; "
                      "adapter); repeat for several. Frozen weights get no updates; the error for a NAME "
                      "the model lacks lists its parts."),
]

_OPTIM = [
    click.option("--lr", type=float, default=None, help="Peak learning rate [default: the stage's]."),
    click.option("--min-lr", type=float, default=DEFAULTS["min_lr"], show_default=True),
    click.option("--lr-decay-method", type=click.Choice(DECAY_METHODS), default=DEFAULTS["lr_decay_method"], show_default=True),
    click.option("--warmup-steps", type=click.IntRange(0), default=DEFAULTS["warmup_steps"], show_default=True),
    click.option("--decay-after-steps", type=click.IntRange(0), default=DEFAULTS["decay_after_steps"], show_default=True),
    click.option("--weight-decay", type=float, default=DEFAULTS["weight_decay"], show_default=True),
    click.option("--clip-grad-norm", type=float, default=DEFAULTS["clip_grad_norm"], show_default=True, help="0 disables."),
    click.option("--gamma", type=click.FloatRange(0, 1), default=DEFAULTS["gamma"], show_default=True,
                 help="Sequence-loss decay: estimate i of n weighs gamma^(n-1-i)."),
    click.option("--transparent-weight", type=float, default=DEFAULTS["transparent_weight"], show_default=True,
                 help="Extra loss weight on transparent pixels."),
    click.option("--robust-scale", type=click.FloatRange(0, min_open=True), default=None, metavar="PX",
                 help="Robust loss: errors beyond PX pixels count logarithmically (scale·log(1+|e|/scale)), "
                      "so large glass errors do not swamp the rest [default: plain L1]."),
    click.option("--shape-weight", type=click.FloatRange(0), default=DEFAULTS["shape_weight"], show_default=True,
                 help="Weight of the label-free shape-consistency loss: the DoLP-weighted "
                      "sin²(2(AoLP − azimuth of ∇d)) of the output (docs/metrics.md); any stage, "
                      "also where ground truth is missing (0 = off)."),
    click.option("--shape-min-dolp", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS["shape_min_dolp"],
                 show_default=True, help="Pixels less polarized than this do not count in that loss."),
]

_MIM = [
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
]

_RUN = [
    click.option("--out", required=True, type=_PATH, help="Run directory: last.ckpt, best.ckpt, metrics.jsonl, config.yaml."),
    click.option("--steps", type=click.IntRange(1), default=DEFAULTS["steps"], show_default=True),
    click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True),
    click.option("--device", default=DEFAULTS["device"], show_default=True, help="cpu, cuda, cuda:N or auto."),
    click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default=DEFAULTS["amp"], show_default=True,
                 help="Mixed precision (auto: bf16 on GPUs that support it, off on CPUs)."),
    click.option("--deterministic", is_flag=True, help="Deterministic algorithms (reproducible, slower)."),
    click.option("--val-every", type=click.IntRange(0), default=DEFAULTS["val_every"], show_default=True),
    click.option("--save-every", type=click.IntRange(0), default=DEFAULTS["save_every"], show_default=True),
    click.option("--log-every", type=click.IntRange(1), default=DEFAULTS["log_every"], show_default=True),
    click.option("--feasibility-statistic", type=click.Choice(FEASIBILITY_STATISTICS), default=DEFAULTS["feasibility_statistic"],
                 show_default=True, help="Base error statistic compared with --max-correction (stage B gate)."),
    click.option("--tensorboard", is_flag=True,
                 help="Also write TensorBoard scalars and validation pictures to --out/tensorboard."),
    quiet_option,
    click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from last.ckpt."),
    click.option("--force", is_flag=True, help="Start despite a wrong lineage or an infeasible stage B."),
    click.option("--stop-after", type=click.IntRange(1), default=None,
                 help="End this invocation after step N (resume later with --resume)."),
]

SECTION_HEADINGS = {"data": "Data options", "model": "Model options", "optim": "Optimiser and loss options",
                    "mim": "Masked modelling options", "run": "Run options"}


def _options(func):
    for option in reversed([*_DATA, *_MODEL, *_OPTIM, *_MIM, *_RUN, json_option]):
        func = option(func)
    return func


# each parameter (named by flat name) -> where its value lives in TrainConfig: its section in --help
_PATHS = {name: path for name, path in FLAT_PATHS.items() if name != "stage"}


class _TrainingCommand(SectionedCommand):
    """A training command: a ``--config`` file (a run's config.yaml) may still name a removed
    correction switch, unset or at its old default (:meth:`TrainConfig.without_retired`)."""

    def config_entries(self, data: dict, path: Path) -> list:
        try:
            data = TrainConfig.without_retired(data)
        except PolstereoError as err:
            raise click.BadParameter(f"{path}: {err}", param_hint="'--config'") from None
        return super().config_entries(data, path)


def _make_command(stage: StageConfig) -> click.Command:
    @click.command(stage.command, cls=_TrainingCommand, sections=SECTION_HEADINGS, paths=_PATHS,
                   help=f"Stage {stage.name}: {stage.title}.\n\nTrains: "
                   f"{' + '.join(stage.trainable)}"
                   + (f"; frozen: {', '.join(stage.frozen)}" if stage.frozen else "")
                   + (f"; pol_diff warped with the {'ground-truth' if stage.warp_source == 'gt' else 'predicted'} "
                      "disparity" if stage.warp_source else "")
                   + (f". Needs a stage {stage.requires} checkpoint as --init." if stage.requires else "."))
    @_options
    def command(train, dataset_steps, json_out, **options):
        from polstereo.training.trainer import train as run

        cfg = TrainConfig.from_flat(stage=stage.name, train=list(train), dataset_steps=list(dataset_steps) or None,
                                    **options)
        log = (lambda msg: None) if options["quiet"] else (lambda msg: click.echo(msg, err=True))
        result = run(cfg, log=log)
        emit_json({"stage": stage.name, "out": str(result.out), "steps_done": result.steps_done,
                   "skipped_steps": result.skipped_steps, "best_score": result.best_score,
                   "last_checkpoint": str(result.last_checkpoint),
                   "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
                   "val_metrics": result.val_metrics, "feasibility": result.feasibility}, json_out)

    return command


adapt_cmd = _make_command(STAGES["A"])
learn_pol_cmd = _make_command(STAGES["B"])
finetune_cmd = _make_command(STAGES["C"])
