"""Dataset commands: ``inspect``."""

from __future__ import annotations

from pathlib import Path

import click

from polstereo.cli.common import SizeCommand, emit_json, json_option, quiet_option, size_option
from polstereo.errors import PolstereoError


@click.command("inspect", cls=SizeCommand)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Check the schema only; skip reading every dataset (checksums, NaNs).")
@click.option("--bins", default=16, show_default=True, type=click.IntRange(1, 512), help="Histogram bins.")
@click.option("--stats", is_flag=True, help="Also the disparity distribution over random training-size crops.")
@size_option("--crop", order="HW", minimum=1, default=(256, 320), help="Crop size for --stats, pixels.")
@click.option("--num-crops", default=200, show_default=True, type=click.IntRange(1), help="Random crops for --stats.")
@click.option("--stats-png", "--png", "png_path", type=click.Path(path_type=Path), default=None,
              help="Where --stats writes its histogram picture [default: <file stem>_crop_disparity.png beside "
                   "the input file].")
@click.option("--seed", default=0, show_default=True, help="Seed for the random crops.")
@click.option("--evidence", is_flag=True,
              help="Also: do the polarization (and intensity) features pin the true disparity? Share of labeled "
                   "pixels whose views agree better at the ground truth than at ground truth ± 2/4/8 px; and does "
                   "the AoLP agree with the shape of the ground truth (vs a flat and a perturbed disparity)?")
@click.option("--max-samples", type=click.IntRange(1), default=None, help="Samples --evidence reads [default: all].")
@quiet_option
@json_option
def inspect_cmd(path: Path, quick: bool, bins: int, stats: bool, crop: tuple[int, int], num_crops: int,
                png_path: Path | None, seed: int, evidence: bool, max_samples: int | None, quiet: bool,
                json_out: str | None) -> None:
    """Summarise and validate a polstereo HDF5 file.

    Prints samples, size, dtypes, the disparity range and histogram and the
    transparent-pixel share, and checks the schema (exit 1 on any violation).
    With --quiet only the exit code (and violations) tell.
    """
    from polstereo.data.stats import crop_stats, summarize, text_histogram, write_histogram_png

    summary = summarize(path, deep=not quick, bins=bins, seed=seed)
    if summary["problems"]:
        emit_json(summary, json_out)
        for problem in summary["problems"]:
            click.echo(f"  violation: {problem}", err=True)
        raise PolstereoError(f"{path}: {len(summary['problems'])} schema violation(s); first: {summary['problems'][0]}")
    if stats:
        summary["crop_stats"] = crop_stats(path, tuple(crop), num_crops=num_crops, seed=seed)
        png_path = png_path or path.with_name(f"{path.stem}_crop_disparity.png")
        write_histogram_png(summary["crop_stats"]["disparity"]["histogram"], png_path,
                            f"{path.name}: disparity over {num_crops} crops {crop[1]}x{crop[0]} (WxH)")
        summary["crop_stats"]["png"] = str(png_path)
    if evidence:
        if not summary["labeled_samples"]:
            raise PolstereoError(f"{path}: --evidence needs ground-truth disparity; the file has none")
        from polstereo.data.h5.reader import H5Reader
        from polstereo.evaluation.evidence import dataset_evidence
        from polstereo.evaluation.shape_evidence import dataset_shape_evidence

        reader = H5Reader(path)
        summary["evidence"] = dataset_evidence(reader, max_samples=max_samples)
        summary["shape_evidence"] = dataset_shape_evidence(reader, max_samples=max_samples)
    emit_json(summary, json_out)
    if json_out != "-" and not quiet:
        for line in _summary_lines(summary, text_histogram):
            click.echo(line)
        if evidence:
            for line in _evidence_lines(summary["evidence"]) + _shape_evidence_lines(summary["shape_evidence"]):
                click.echo(line)


def _evidence_lines(ev: dict) -> list[str]:
    from polstereo.evaluation.evidence import TABLE_HEADER, table_rows

    lines = [f"  evidence: share of labeled pixels whose views agree better at the true disparity than "
             f"at it ± δ ({ev['window']}x{ev['window']} window; 0.5 = no signal)",
             f"    {'δ (px)':>6} {TABLE_HEADER}"]
    for delta, regions in ev["offsets"].items():
        lines += [f"    {delta:>6g} {row}" for _, row in table_rows(regions)]
    return lines


def _shape_evidence_lines(ev: dict) -> list[str]:
    from polstereo.evaluation.shape_evidence import summary_lines

    return ["  " + line for line in summary_lines(ev)]


def _summary_lines(s: dict, text_histogram) -> list[str]:
    mib = s["size_bytes"] / 2**20
    disp = s["disparity"]
    lines = [
        f"{s['path']}: polstereo format v{s['format_version']}, {s['samples']} samples, {mib:.2f} MiB",
        f"  angles (deg)      : {', '.join(f'{a:g}' for a in s['angles_deg'])}   colour: {s['color']}",
        f"  image sizes (WxH) : {', '.join(f'{k} x{v}' for k, v in s['image_sizes'].items()) or '-'}",
        f"  image dtypes      : {', '.join(f'{k} x{v}' for k, v in s['image_dtypes'].items()) or '-'}",
        f"  labeled samples   : {s['labeled_samples']}   with transparency mask: {s['samples_with_transparency_mask']}",
        f"  valid pixels      : {100 * s['valid_share']:.1f} %   transparent: {100 * s['transparent_share']:.1f} %"
        f"   occluded: {100 * s['occluded_share']:.1f} %",
    ]
    if disp.get("pixels"):
        pct = disp["percentiles"]
        lines.append(f"  disparity (px)    : min {disp['min']:.2f}  mean {disp['mean']:.2f}  max {disp['max']:.2f}"
                     f"  (p5 {pct['p5']:.2f}, median {pct['p50']:.2f}, p95 {pct['p95']:.2f})")
        lines += ["  " + row for row in text_histogram(disp["histogram"])]
    if s.get("provenance"):
        source = s["provenance"].get("source") or s["provenance"].get("generator") or ""
        if source:
            lines.append(f"  provenance        : {source}")
        generated = s["provenance"].get("config")
        if isinstance(generated, dict):  # make-synthetic: what the scenes hold (older files: solid glass)
            glass = generated.get("glass", ["solid"])
            lines.append(f"  generated with    : glass {','.join(map(str, glass))}; textures "
                         f"{generated.get('textures', 'procedural')}; rig {generated.get('rig') or 'none'}")
    if "crop_stats" in s:
        c = s["crop_stats"]
        cd = c["disparity"]
        lines.append(f"  crops {c['crop'][1]}x{c['crop'][0]} (WxH, {c['crops']} of them): "
                     f"{c['crops_without_valid_pixels']} without valid pixels, "
                     f"{c['crops_without_transparent_pixels']} without transparent pixels, "
                     f"{100 * c['share_beyond_crop_width']:.2f} % of disparities >= crop width")
        if cd.get("pixels"):
            pct = cd["percentiles"]
            lines.append(f"  crop disparity    : p1 {pct['p1']:.2f}  median {pct['p50']:.2f}  p99 {pct['p99']:.2f}"
                         f"  max {cd['max']:.2f}")
            lines += ["  " + row for row in text_histogram(cd["histogram"])]
        lines.append(f"  histogram picture : {c['png']}")
    lines.append("  schema            : " + ("valid" if s["valid"] else f"{len(s['problems'])} violation(s)"))
    return lines
