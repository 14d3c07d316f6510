"""``polstereo make-synthetic``: procedural polarized stereo data with transparent objects."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import click

from polstereo.cli.common import SizeCommand, emit_json, json_option, quiet_option, show_progress, size_option
from polstereo.data.synthetic.config import (GLASS_KINDS, LIGHTING_FAMILIES, POLARIZATION_MODELS, TEXTURE_MODES,
                                             SyntheticConfig)
from polstereo.data.synthetic.rigs import RIG_PRESETS
from polstereo.io.lock import output_lock


@click.command("make-synthetic", cls=SizeCommand)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--num", "-n", default=100, show_default=True, type=click.IntRange(1), help="Samples in all splits.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Same seed, same data.")
@size_option("--size", order="WH", minimum=16, default=(320, 256), help="Image size in pixels.")
@click.option("--rig", type=click.Choice(list(RIG_PRESETS)), default=None,
              help="A real polarization stereo rig, scaled to --size: sets the focal length, baseline, disparity "
                   "range (from its working distances), 12-bit sensor noise and polarizer extinction ratio; "
                   "options given explicitly win. See docs/synthetic.md.")
@click.option("--focal", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Focal length in pixels [default: the image width, or the rig's].")
@click.option("--baseline", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Stereo baseline in metres [default: 0.1, or the rig's].")
@click.option("--max-disparity", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest first-surface disparity in pixels [default: 20 % of the width, or the rig's].")
@click.option("--transparent", nargs=2, type=click.IntRange(0), default=(1, 3), show_default=True,
              metavar="MIN MAX", help="Glass objects per scene; 0 0 makes generic data without glass.")
@click.option("--glass", default=",".join(GLASS_KINDS), show_default=True, metavar="KINDS",
              help="What glass objects are, drawn uniformly per object: comma-separated solid (clear solids: "
                   "spheres, ellipsoids, cylinders, boxes, prisms), thin (thin-walled cups, jars, bottles, bowls, "
                   "vases), pane (flat panes), slab (thick panes); panes and slabs at any orientation. A kind named "
                   "twice is drawn twice as often (solid,solid,thin,thin,pane,slab: a third solids).")
@click.option("--lighting", default=",".join(LIGHTING_FAMILIES), show_default=True, metavar="FAMILIES",
              help="Lighting families, drawn uniformly per scene: comma-separated window-env (sky and bright "
                   "windows), area-lamp (large lamps in a dark room), overhead (ceiling panels), uniform (an even "
                   "environment), room-env (the one lighting of earlier versions); a family named twice is drawn "
                   "twice as often.")
@click.option("--polarization", type=click.Choice(POLARIZATION_MODELS), default=SyntheticConfig.polarization,
              show_default=True,
              help="The renderer's polarization model: mueller (every interface in its own plane of incidence, "
                   "reflections traced into the scene) or shared-plane (earlier versions: all of a pixel in the "
                   "first hit's plane of incidence).")
@click.option("--textures", type=click.Choice(TEXTURE_MODES), default=SyntheticConfig.textures, show_default=True,
              help="Textures of walls, floors and opaque objects: procedural patterns, photographs (scikit-image's "
                   "bundled ones plus --texture-dir), or either drawn per surface.")
@click.option("--texture-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="A folder of your own PNG/JPEG photos, added to the photo textures.")
@click.option("--opaque", nargs=2, type=click.IntRange(0), default=(1, 4), show_default=True,
              metavar="MIN MAX", help="Opaque objects per scene.")
@click.option("--split", nargs=3, type=click.FloatRange(0), default=(0.8, 0.1, 0.1), show_default=True,
              metavar="TRAIN VAL TEST", help="Fractions of samples for train.h5, val.h5, test.h5.")
@click.option("--exposure", nargs=2, type=click.FloatRange(0, 1, min_open=True), default=SyntheticConfig.exposure,
              show_default=True, metavar="MIN MAX",
              help="How bright a scene is: its median unpolarized pixel value, a fraction of white, drawn "
                   "uniformly per scene; a low MIN makes dim scenes, where sensor noise and quantisation count.")
@click.option("--bit-depth", type=click.Choice(["8", "12", "16"]), default=None,
              help="Quantisation; 12-bit is stored as uint16 with white level 4095 [default: 8, or the rig's].")
@click.option("--extinction-ratio", type=click.FloatRange(min=1, min_open=True), default=None, metavar="ER",
              help="Polarizer extinction ratio (e.g. 200): the camera sees DoLP scaled by (ER-1)/(ER+1); "
                   "'inf' = ideal [default: ideal, or the rig's].")
@click.option("--color", type=click.Choice(["mono", "rgb"]), default="mono", show_default=True, help="Colour mode.")
@click.option("--noise/--no-noise", default=True, show_default=True, help="Shot and read noise.")
@click.option("--workers", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Processes; the data do not depend on it.")
@click.option("--overwrite", is_flag=True,
              help="Replace the split files of an earlier run in OUT_DIR (as a whole; splits this run leaves "
                   "empty are removed).")
@click.option("--shard-size", type=click.IntRange(1), default=None, metavar="N",
              help="Write each split as shards of N samples: train-00000.h5, train-00001.h5, ... (the training "
                   "commands read them with a glob, --train 'OUT_DIR/train-*.h5'). With --workers, each worker "
                   "writes whole shards itself, the fastest way to make a large set.")
@click.option("--resume", is_flag=True,
              help="With --shard-size: keep the shards an interrupted run of the same command finished and make "
                   "only the rest.")
@quiet_option
@json_option
def make_synthetic_cmd(out_dir: Path, num: int, seed: int, size: tuple[int, int], rig: str | None,
                       focal: float | None, baseline: float | None, max_disparity: float | None,
                       transparent: tuple[int, int], glass: str, lighting: str, polarization: str, textures: str,
                       texture_dir: Path | None,
                       opaque: tuple[int, int], split: tuple[float, float, float], exposure: tuple[float, float],
                       bit_depth: str | None,
                       extinction_ratio: float | None, color: str, noise: bool, workers: int, overwrite: bool,
                       shard_size: int | None, resume: bool, quiet: bool, json_out: str | None) -> None:
    """Render a synthetic polarized stereo dataset into OUT_DIR/{train,val,test}.h5.

    Rectified pinhole pairs of textured walls, opaque objects and glass (clear solids,
    thin-walled vessels, panes, slabs), ray cast per view: glass shows the refracted background plus a polarized
    Fresnel reflection of the scene and a lit environment, every interface polarizing in its own plane of
    incidence. Ground truth: first-surface disparity,
    transparency, validity and occlusion masks. The three files are written as one set:
    an earlier set in OUT_DIR needs --overwrite, and an interrupted run leaves it as it
    was. See docs/synthetic.md.
    """
    from polstereo.data.synthetic.generate import generate_dataset

    ideal_polarizer = extinction_ratio is not None and math.isinf(extinction_ratio)
    values = dict(width=size[0], height=size[1], focal_px=focal, baseline_m=baseline, max_disparity=max_disparity,
                  transparent=tuple(transparent), opaque=tuple(opaque), exposure=tuple(exposure),
                  glass=tuple(kind.strip() for kind in glass.split(",") if kind.strip()),
                  lighting=tuple(family.strip() for family in lighting.split(",") if family.strip()),
                  polarization=polarization, textures=textures,
                  texture_dir=None if texture_dir is None else str(texture_dir.absolute()), noise=noise,
                  bit_depth=None if bit_depth is None else int(bit_depth),
                  extinction_ratio=None if ideal_polarizer else extinction_ratio, color=color, seed=seed)
    if rig is not None:
        config = SyntheticConfig.with_rig(rig, **values)
    else:
        config = SyntheticConfig(**{k: v for k, v in values.items() if v is not None})
    if ideal_polarizer:
        config = dataclasses.replace(config, extinction_ratio=None)
    config = config.validated()
    with output_lock(out_dir, "data set"):
        summary = generate_dataset(out_dir, config, num, split=split, workers=workers, progress=show_progress(quiet),
                                   overwrite=overwrite, shard_size=shard_size, resume=resume)
    emit_json(summary, json_out)
    if json_out != "-" and not quiet:
        files = ", ".join(f"{name}.h5 ({info['samples']})" if "shards" not in info
                          else f"{name}-*.h5 ({info['samples']} in {len(info['shards'])} shards)"
                          for name, info in summary["files"].items())
        click.echo(f"wrote {summary['num']} samples {config.width}x{config.height} to {summary['out_dir']}: {files}; "
                   f"{100 * summary['transparent_share']:.1f} % transparent pixels, "
                   f"{summary['samples_per_second']:.1f} samples/s")
