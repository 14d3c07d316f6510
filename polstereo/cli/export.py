"""``polstereo export``: a checkpoint to an ONNX graph, checked in onnxruntime (a thin layer over ``export_onnx``)."""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.cli.common import SizeCommand, emit_json, json_option, quiet_option, size_option
from polstereo.io.lock import output_lock


@click.command("export", cls=SizeCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path), metavar="OUT.onnx")
@click.option("--base-only", is_flag=True,
              help="Export the base model alone: inputs are intensity images (B, C, H, W) instead of angle stacks.")
@click.option("--opset", type=click.IntRange(18, 20), default=18, show_default=True, help="ONNX opset version.")
@click.option("--iters", type=click.IntRange(1), default=None,
              help="Base refinement iterations unrolled into the graph [model default].")
@click.option("--use-ema", is_flag=True, help="Export the EMA teacher's weights (runs trained with --ema-decay).")
@size_option("--input-size", order="WH", minimum=16, default=None,
             help="Export for this one input size only (required for an S2M2 base, whose code fixes the size "
                  "when traced; built-in models are dynamic without it).")
@click.option("--tolerance", type=click.FloatRange(min=0.0, min_open=True), default=1e-3, show_default=True,
              help="Largest accepted onnxruntime-vs-PyTorch difference of any output, pixels.")
@quiet_option
@json_option
def export_cmd(checkpoint: Path, out: Path, json_out: str | None, quiet: bool, **options) -> None:
    """Export CHECKPOINT to OUT.onnx (dynamic batch, height and width, or a fixed --input-size;
    metadata inside), then check it against PyTorch in onnxruntime on two inputs. A failed
    check writes no file. See docs/export.md."""
    from polstereo.export.onnx import ExportConfig, ParityError, export_onnx

    config = ExportConfig(checkpoint=checkpoint, out=out, **options)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    try:
        with output_lock(out, "file"):
            report = export_onnx(config, log=log)
    except ParityError as err:
        emit_json({**err.report, "written": False}, json_out)
        raise
    if not quiet:
        parity = report["parity"]
        size = report["input_size"]
        fixed = "" if size is None else f", fixed input size {size[0]}x{size[1]}"
        click.echo(f"wrote {out} ({report['graph']} graph{fixed}, {report['iters']} iterations, "
                   f"opset {report['opset']}); "
                   f"parity with PyTorch: max |disparity difference| "
                   f"{parity['max_disparity_diff_px']:.2g} px over {len(parity['runs'])} input shapes "
                   f"(tolerance {parity['tolerance']:g} px)", err=True)
    emit_json({**report, "written": True}, json_out)
