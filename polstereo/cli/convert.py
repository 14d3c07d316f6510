"""``polstereo convert-dataset``: a source tree -> OUT/train.h5, val.h5, test.h5."""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.cli.common import emit_json, json_option, quiet_option, show_progress
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.io.lock import output_lock

LAYOUTS = ("folder", "mitsuba", "mosaic")  # keep in step with converters.registry (checked by a test)
# File-role options --left GLOB ...: globs in each sample directory, '' switches a role off.
# The defaults quoted here are the converters' (a test keeps them in step).
ROLE_HELP = {
    "left": "Left view; {angle} = each angle. [folder: left_{angle}.*, mitsuba: left.exr, mosaic: left_raw.*]",
    "right": "Right view. [folder: right_{angle}.*, mitsuba: right.exr, mosaic: right_raw.*]",
    "disparity": "Disparity (.pfm .npy .exr, 16-bit .png). [disparity.*]",
    "depth": "mitsuba: depth (.exr .npy) when there is no disparity file. [depth.*]",
    "mask": "Transparency mask, nonzero = transparent. [mask.*]",
    "occlusion": "Optional occlusion mask. [occlusion.*]",
    "valid": "Optional validity mask. [valid.*]",
    "meta": "Optional JSON: focal_px, baseline_m, scene_id. [meta.json]",
}
ROLE_OPTIONS = tuple(ROLE_HELP)


def _role_options(func):
    for role in reversed(ROLE_OPTIONS):
        func = click.option(f"--{role}", f"pattern_{role}", default=None, metavar="GLOB", help=ROLE_HELP[role])(func)
    return func


def _parse_angles(text: str) -> tuple[float, ...]:
    try:
        angles = tuple(float(a) for a in text.replace(",", " ").split())
    except ValueError:
        raise PolstereoError(f"--angles wants numbers in degrees like '0,45,90,135', got {text!r}", EXIT_USAGE)
    return angles


@click.command("convert-dataset")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--layout", type=click.Choice(LAYOUTS), default="folder", show_default=True,
              help="Source layout (docs/convert.md lists each one's files).")
@_role_options
@click.option("--angles", default="0,45,90,135", show_default=True,
              help="Polarizer angles (deg) of folder images / synthesised from Mitsuba Stokes.")
@click.option("--color", type=click.Choice(("auto", "mono", "rgb")), default="auto", show_default=True,
              help="Colour mode to write; auto keeps the source's.")
@click.option("--disp-scale", default=256.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="16-bit PNG disparity: stored value = disparity * scale (0 = invalid).")
@click.option("--bit-depth", type=click.IntRange(1, 16), default=None,
              help="Significant bits of integer images (e.g. 12: white level 4095).")
@click.option("--white-level", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stored value that means 1.0 (overrides --bit-depth; e.g. for HDR renders).")
@click.option("--focal-px", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Focal length in pixels where meta.json has none.")
@click.option("--baseline-m", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stereo baseline in metres where meta.json has none.")
@click.option("--depth-kind", type=click.Choice(("range", "z")), default="range", show_default=True,
              help="mitsuba depth: distance along the ray (Mitsuba's depth AOV) or planar Z.")
@click.option("--depth-channel", default="depth", show_default=True,
              help="mitsuba: EXR channel with depth ('depth' also matches 'depth.T').")
@click.option("--mosaic-layout", default="IMX250MZR", show_default=True,
              help="mosaic: sensor layout name, or the 2x2 super-pixel's angles row-major ('90,45,135,0').")
@click.option("--split", "split_ratios", nargs=3, type=click.FloatRange(min=0), default=(0.8, 0.1, 0.1),
              show_default=True, metavar="TRAIN VAL TEST", help="Split shares (normalised).")
@click.option("--split-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Lines 'name split' (train/val/test); overrides --split.")
@click.option("--seed", default=0, show_default=True, help="Seed of the ratio split.")
@click.option("--workers", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Processes that read and decode samples.")
@click.option("--compression", type=click.Choice(("lzf", "gzip", "none")), default="lzf", show_default=True,
              help="lzf decodes fastest (h5py); gzip for non-Python HDF5 tools (docs/format.md).")
@click.option("--overwrite", is_flag=True, help="Replace existing split files in OUT.")
@quiet_option
@json_option
def convert_dataset_cmd(src: Path, out: Path, layout: str, angles: str, color: str, disp_scale: float,
                        bit_depth: int | None, white_level: float | None, focal_px: float | None,
                        baseline_m: float | None, depth_kind: str, depth_channel: str, mosaic_layout: str,
                        split_ratios: tuple[float, float, float], split_file: Path | None, seed: int,
                        workers: int, compression: str, overwrite: bool, quiet: bool, json_out: str | None,
                        **patterns: str | None) -> None:
    """Convert a polarized stereo source tree SRC into OUT/train.h5, val.h5 and test.h5.

    SRC holds one directory per sample. Samples that cannot be converted (missing or
    corrupt files, size mismatches, no valid disparity) are skipped and listed with the
    reason; nothing is left half-written if the conversion stops.
    """
    from polstereo.data.converters import ConvertConfig, SourceOptions, convert_dataset
    from polstereo.data.converters.pipeline import ConversionFailed

    source = SourceOptions(
        patterns={key.removeprefix("pattern_"): value for key, value in patterns.items() if value is not None},
        angles_deg=_parse_angles(angles), color=color, disp_scale=disp_scale, bit_depth=bit_depth,
        white_level=white_level, focal_px=focal_px, baseline_m=baseline_m, depth_kind=depth_kind,
        depth_channel=depth_channel, mosaic_layout=mosaic_layout)
    config = ConvertConfig(src=src, out=out, layout=layout, source=source, split_ratios=tuple(split_ratios),
                           split_file=split_file, seed=seed, workers=workers, progress=show_progress(quiet),
                           overwrite=overwrite, compression=compression)
    try:
        with output_lock(out, "data set"):
            report = convert_dataset(config)
    except ConversionFailed as failed:
        emit_json(failed.report.to_dict(), json_out)
        for line in failed.report.lines()[1:]:
            click.echo(line, err=True)
        raise
    emit_json(report.to_dict(), json_out)
    if json_out != "-":
        for line in report.lines():
            click.echo(line)
