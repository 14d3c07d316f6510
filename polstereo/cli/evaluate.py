"""Measuring commands: ``check-feasibility`` and ``eval``."""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.cli.common import emit_json, json_option, positive_pixels, quiet_option
from polstereo.errors import EXIT_INFEASIBLE, PolstereoError

_PATH = click.Path(path_type=Path)


def _load(checkpoint: Path, device: str, use_ema: bool = False):
    from polstereo.models.files import load_for_inference
    from polstereo.devices import resolve_device

    dev = resolve_device(device)
    model, payload = load_for_inference(checkpoint, use_ema=use_ema, map_location=dev)
    return model.to(dev).eval(), payload, dev


@click.command("check-feasibility")
@click.argument("checkpoint", type=_PATH)
@click.option("--data", required=True, type=_PATH, help="Validation HDF5 file with disparity and transparency masks.")
@click.option("--max-correction", type=float, default=None, callback=positive_pixels, metavar="PX",
              help="Correction bound in pixels [default: the checkpoint's].")
@click.option("--statistic", type=click.Choice(["mean", "median", "p90"]), default="mean", show_default=True,
              help="Which base error statistic on transparent pixels must not exceed --max-correction.")
@click.option("--iters", type=click.IntRange(1), default=None, help="Base refinement iterations.")
@click.option("--max-samples", type=click.IntRange(1), default=None, help="Use the first N labeled samples.")
@click.option("--device", default="auto", show_default=True)
@quiet_option
@json_option
def check_feasibility_cmd(checkpoint, data, max_correction, statistic, iters, max_samples, device, quiet, json_out):
    """Is stage B feasible? Compare the base error on transparent pixels with max_correction.

    Also reports the evidence a correction could learn from: do the two views'
    polarization features agree better at the true disparity than at the base's, and does
    the AoLP agree better with the true shape than with the base's (docs/metrics.md).
    Exits 0 when feasible and 3 when not, so `set -e` scripts stop before an
    impossible learn-pol.
    """
    from polstereo.data.h5.reader import open_dataset
    from polstereo.evaluation.feasibility import base_error_statistics, feasibility_verdict, infeasible_reason

    model, payload, dev = _load(checkpoint, device)
    if max_correction is not None:
        model.max_correction = max_correction  # the model checks its bound
    bound = model.max_correction
    reader = open_dataset(data)  # a file, or a glob of shards
    stats = base_error_statistics(model, reader, dev, bound, iters=iters, max_samples=max_samples)
    feasible, value, region = feasibility_verdict(stats, bound, statistic)
    shape = stats.pop("shape_evidence")
    report = {"checkpoint": str(checkpoint), "data": str(data), "max_correction": bound, "statistic": statistic,
              "region": region, "value": value, "feasible": feasible, "errors": stats,
              "saturation_fraction": stats["saturation_fraction"], "shape_evidence": shape,
              "lineage": [e.get("stage") for e in payload.get("lineage", [])]}
    emit_json(report, json_out)
    if json_out != "-" and not quiet:
        click.echo(f"base error of {checkpoint} on {data} (|base - gt|, px):")
        click.echo(f"  {'region':<12} {'pixels':>9} {'mean':>8} {'median':>8} {'p90':>8} {'<= bound':>9}")
        for name in ("all", "transparent", "opaque"):
            s = stats[name]
            if s.get("pixels"):
                click.echo(f"  {name:<12} {s['pixels']:>9d} {s['mean']:>8.3f} {s['median']:>8.3f} {s['p90']:>8.3f} "
                           f"{100 * s['within_max_correction']:>8.1f}%")
        if stats["saturation_fraction"] is not None:
            click.echo(f"  tanh saturation fraction of the correction: {stats['saturation_fraction']:.4f}")
        _echo_evidence(stats.get("evidence"))
        _echo_shape_evidence(shape)
        click.echo(f"verdict: {'FEASIBLE' if feasible else 'INFEASIBLE'} — {statistic} error on {region} pixels "
                   f"{value:.3f} px {'<=' if feasible else '>'} max_correction {bound:g} px")
    if not feasible:
        raise PolstereoError(f"infeasible: {infeasible_reason(statistic, region, value, bound)}", EXIT_INFEASIBLE)


def _echo_evidence(evidence: dict | None) -> None:
    from polstereo.evaluation.evidence import TABLE_HEADER, evidence_line, table_rows

    rows = table_rows(evidence or {})
    if not rows:
        return
    click.echo(f"evidence where the base is off by > {evidence['min_error']:g} px: share of pixels whose features "
               f"agree better at the true disparity ({evidence['window']}x{evidence['window']} window; 0.5 = none):")
    click.echo(f"  {TABLE_HEADER}")
    for name, row in rows:
        click.echo(f"  {row}   polarization: {evidence_line(evidence[name]['polarization'])}")


def _echo_shape_evidence(shape: dict) -> None:
    from polstereo.evaluation.evidence import evidence_line
    from polstereo.evaluation.shape_evidence import summary_lines

    for line in summary_lines(shape):
        click.echo(line)
    for region in ("transparent", "all"):
        share = shape.get(region, {}).get("gt_better_than", {}).get("base")
        if share is not None:
            click.echo(f"  gt<base on {region} pixels: {evidence_line(share)}")
            return


@click.command("eval")
@click.argument("checkpoint", type=_PATH)
@click.option("--data", required=True, type=_PATH,
              help="Test HDF5 file, or a Middlebury/KITTI folder of ordinary pairs (base model alone).")
@click.option("--iters", type=click.IntRange(1), multiple=True,
              help="Refinement iteration counts to evaluate, e.g. --iters 1 --iters 4 [default: the model's].")
@click.option("--max-samples", type=click.IntRange(1), default=None)
@click.option("--save-vis", type=_PATH, default=None,
              help="Write colourised prediction, ground truth and error maps here (for the last --iters count; "
                   "with several counts, one subfolder each: DIR/iters1/, DIR/iters4/).")
@click.option("--device", default="auto", show_default=True)
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="off", show_default=True)
@click.option("--use-ema", is_flag=True, help="Evaluate the EMA teacher's weights (runs with --mask-ratio/--ema-decay).")
@click.option("--per-sample", "per_sample_csv", type=_PATH, default=None, metavar="OUT.csv",
              help="Write one CSV row per sample (and --iters count): its glass kinds, lighting, pixels, EPE and "
                   "bad-2 per region for base and final, saturation (docs/metrics.md).")
@click.option("--by", type=click.Choice(["kind", "lighting"]), multiple=True,
              help="Also print sample-averaged results per glass kind or lighting family, as the samples "
                   "record them (repeatable).")
@click.option("--exclude-occluded", is_flag=True,
              help="Score only pixels visible in both views (KITTI's 'noc'), where the file has occlusion masks.")
@quiet_option
@json_option
def eval_cmd(checkpoint, data, iters, max_samples, save_vis, device, amp, use_ema, per_sample_csv, by,
             exclude_occluded, quiet, json_out):
    """Metrics per region (all / transparent / opaque), base-only and with correction.

    CHECKPOINT is a model file, or `sgbm` for OpenCV's semi-global block matching on the
    intensity images (a classical reference that never saw training data).

    EPE, rmse, bad-1/2/3, 1/3/5 px accuracies, relepe and D1 (docs/metrics.md),
    pixel-weighted over the dataset, for each --iters count; per sample with
    --per-sample, per glass kind or lighting with --by.
    """
    from polstereo.evaluation.evaluate import EvalConfig, run_eval

    cfg = EvalConfig(checkpoint, data, tuple(iters), max_samples, save_vis, device, amp, use_ema,
                     per_sample_csv=per_sample_csv, by=tuple(by), exclude_occluded=exclude_occluded)
    report = run_eval(cfg, log=click.echo if not quiet and json_out != "-" else lambda _: None)
    emit_json(report, json_out)
    if json_out != "-" and not quiet:
        for line in _eval_lines(report):
            click.echo(line)


METRIC_COLUMNS = ("epe", "rmse", "bad1", "bad2", "bad3", "acc1", "acc3", "acc5", "relepe", "d1")


def _eval_lines(report: dict) -> list[str]:
    from polstereo.evaluation.breakdown import BY_KEYS, aggregate_lines

    lines = [f"eval {report['checkpoint']} on {report['data']}"
             + ("" if report["has_correction"] else " (base only: no correction module or no polarization)")]
    for run in report["runs"]:
        lines.append(f"iters {run['iters']}, {run['samples']} samples")
        header = f"  {'region':<12} {'output':<6} {'pixels':>9} " + " ".join(f"{c:>7}" for c in METRIC_COLUMNS)
        lines.append(header)
        for region in ("all", "transparent", "opaque"):
            for output in (("base", "final") if report["has_correction"] else ("final",)):
                m = run[output].get(region)
                if not m or not m.get("pixels"):
                    continue
                lines.append(f"  {region:<12} {output:<6} {m['pixels']:>9d} "
                             + " ".join(f"{m[c]:>7.3f}" for c in METRIC_COLUMNS))
        if report["has_correction"] and run["polarization_gain"]:
            gain = ", ".join(f"{r} {v:+.1f}%" for r, v in run["polarization_gain"].items())
            lines.append(f"  EPE reduction by the correction: {gain}"
                         + (f"; saturation {run['saturation_fraction']:.4f}" if run["saturation_fraction"] is not None
                            else ""))
        if run.get("vis_dir"):
            lines.append(f"  pictures: {run['vis_dir']}")
        for key in BY_KEYS:
            if f"by_{key}" in run and (run[f"by_{key}"]["recorded"] or run is report["runs"][0]):
                lines += aggregate_lines(run[f"by_{key}"], with_base=report["has_correction"])
    if report.get("per_sample_csv"):
        lines.append(f"per-sample values: {report['per_sample_csv']['path']} "
                     f"({report['per_sample_csv']['rows']} rows)")
    return lines
