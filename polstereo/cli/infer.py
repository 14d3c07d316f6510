"""``polstereo infer``: run a checkpoint or an ONNX graph on captured pairs (a thin layer over ``run_inference``)."""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.errors import PolstereoError

from polstereo.cli.common import emit_json, json_option, quiet_option, show_progress
from polstereo.io.lock import output_lock

_FORMATS = ("pfm", "npy", "png16")


def _angles(ctx, param, value: str) -> tuple[float, ...]:
    try:
        angles = tuple(float(a) for a in value.split(",") if a.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated degrees such as 0,45,90,135, got {value!r}") from None
    if len(angles) < 3:
        raise click.BadParameter(f"need at least 3 polarizer angles, got {value!r}")
    return angles


def _formats(ctx, param, values: tuple[str, ...]) -> tuple[str, ...]:
    formats = [f.strip().lower() for value in values for f in value.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(_FORMATS))
    if unknown:
        raise click.BadParameter(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(_FORMATS)}")
    return tuple(dict.fromkeys(formats)) or ("pfm",)


@click.command("infer")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("--onnx", type=click.Path(path_type=Path), default=None, metavar="FILE.onnx",
              help="Run a graph written by 'polstereo export' through onnxruntime instead of a CHECKPOINT "
                   "(a CHECKPOINT ending in .onnx is taken as this). See docs/export.md.")
@click.option("--left", default=None, metavar="PATH",
              help="Left view: an image, raw mosaic, directory, glob, or pattern with {angle} (and {name}); "
                   "a Middlebury scene folder (im0.png/im1.png) or a folder of them needs no --right.")
@click.option("--right", default=None, metavar="PATH", help="Right view, the same kind as --left.")
@click.option("--data", default=None, metavar="FILE.h5", help="Run on every sample of a polstereo HDF5 file.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output directory; each pair gets a folder OUT/<name>/.")
@click.option("--mosaic", default=None, metavar="LAYOUT",
              help="--left/--right are raw polarization-sensor images of this layout (e.g. IMX250MZR, IMX250MYR).")
@click.option("--bit-depth", type=click.IntRange(1, 16), default=None,
              help="Sensor bit depth of integer images: white level 2^N-1 (12 for 12-bit data in 16-bit PNGs) "
                   "[default: the file's type, 255 or 65535].")
@click.option("--angles", default="0,45,90,135", show_default=True, callback=_angles,
              help="Polarizer angles (degrees) substituted for {angle} in patterns.")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Calibration: OpenCV stereo YAML/XML/JSON (K1 D1 K2 D2 R T; pairs get rectified), "
                   "{K, baseline} for rectified pairs, or a Middlebury calib.txt. Adds depth output.")
@click.option("--ply", is_flag=True, help="Write a coloured point cloud (needs a camera: --calib or HDF5 data).")
@click.option("--format", "formats", multiple=True, default=("pfm",), callback=_formats, show_default=True,
              help="Disparity file format: pfm, npy, png16 (x256); repeat or comma-separate for several.")
@click.option("--vis-range", nargs=2, type=float, default=None, metavar="MIN MAX",
              help="Fixed disparity range of the colourised disparity [default: per image].")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto", show_default=True,
              help="Mixed precision (auto: bf16 on GPUs that support it, off on CPUs).")
@click.option("--iters", type=click.IntRange(1), default=None, help="Base refinement iterations [model default].")
@click.option("--use-base-only", is_flag=True, help="Skip the polarization correction (base model on S0/2).")
@click.option("--use-ema", is_flag=True, help="Use the EMA teacher's weights (runs trained with --mask-ratio/--ema-decay).")
@click.option("--max-size", type=click.IntRange(16), default=None, metavar="PIXELS",
              help="Downscale so the long side is at most PIXELS, run, upsample the disparity back (x scale).")
@click.option("--tile", "tile_rows", type=click.IntRange(8), default=None, metavar="ROWS",
              help="Run in full-width bands of ROWS rows (of the image the model sees) to bound memory.")
@click.option("--tile-overlap", type=click.IntRange(0), default=32, show_default=True, metavar="PX",
              help="Rows shared by neighbouring bands, blended linearly.")
@click.option("--channels-last", is_flag=True, help="Channels-last memory format (faster convolutions on GPUs).")
@click.option("--compile", is_flag=True,
              help="torch.compile the model (GPU speed; the first pair of each image size compiles, slowly).")
@click.option("--compile-mode", type=click.Choice(["auto", "default", "reduce-overhead", "max-autotune"]),
              default="auto", show_default=True,
              help="torch.compile mode; auto: reduce-overhead (CUDA graphs) on GPUs, default on CPUs.")
@quiet_option
@json_option
def infer_cmd(checkpoint: Path | None, json_out: str | None, quiet: bool, vis_range, **options) -> None:
    """Run CHECKPOINT (or --onnx FILE.onnx) on stereo pairs: disparity, correction, confidence,
    polarization pictures, and depth / point clouds with a calibration. See docs/infer.md."""
    from polstereo.inference.pipeline import InferConfig, run_inference

    if (checkpoint is None) == (options["onnx"] is None):
        raise click.UsageError("give either CHECKPOINT or --onnx FILE.onnx (exactly one)")

    config = InferConfig(checkpoint=checkpoint, angles_deg=options.pop("angles"), vis_range=vis_range or None,
                         progress=show_progress(quiet), keep_arrays=False, **options)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    with output_lock(config.out, "output folder"):
        results = run_inference(config, log=log)
    failed = [r for r in results if "error" in r]
    if not quiet:
        click.echo(f"wrote {len(results) - len(failed)} pair(s) to {config.out}", err=True)
    emit_json({"checkpoint": None if checkpoint is None else str(checkpoint),
               "onnx": None if config.onnx_file() is None else str(config.onnx_file()),
               "out": str(config.out), "device": config.device,
               "amp": config.amp, "pairs": results}, json_out)
    if failed:
        rest = "the others were written" if len(failed) < len(results) else "nothing was written"
        raise PolstereoError(f"{len(failed)} of {len(results)} pair(s) failed (first: {failed[0]['error']}); {rest}")
