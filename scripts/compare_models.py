"""Models side by side on one labeled set: overall, per glass kind and per lighting, as markdown.

    python scripts/compare_models.py OUT_DIR --data VAL.h5 [--exclude-occluded] [--motorcycle DIR]
        [--output final|base] LABEL=MODEL [LABEL=MODEL ...]

MODEL is a checkpoint or ``sgbm``. Each model is scored once by ``polstereo eval``'s library
function (``--by kind --by lighting``; the JSON report is kept as OUT_DIR/LABEL.json and reused
while it is newer than the model file, so adding a model to a table re-scores only it).
``--motorcycle DIR`` (scripts/motorcycle_scene.py) adds the real Middlebury pair, base alone.
Prints three markdown tables: glass / opaque / all EPE and bad-2 (pixel-weighted), glass EPE
per kind and per lighting (sample-averaged over the samples that contain each, as
``eval --by`` defines them). The tables of docs/results.md's validation section come from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polstereo.errors import PolstereoError
from polstereo.evaluation.evaluate import EvalConfig, run_eval


def scored(label: str, model: str, data: Path, out_dir: Path, exclude_occluded: bool, by: tuple[str, ...]) -> dict:
    path = out_dir / f"{label}.json"
    model_path = Path(model)
    if path.exists() and (not model_path.exists() or path.stat().st_mtime > model_path.stat().st_mtime):
        report = json.loads(path.read_text())
        if report.get("data") == str(data) and report.get("exclude_occluded", False) == exclude_occluded:
            return report
    report = run_eval(EvalConfig(checkpoint=model_path, data=data, by=by, exclude_occluded=exclude_occluded))
    path.write_text(json.dumps(report, indent=1, default=str))
    return report


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def overall_table(reports: dict[str, dict], output: str, motorcycle: dict[str, dict]) -> list[str]:
    head = "| model | glass EPE | glass bad-2 % | opaque EPE | opaque bad-2 % | all EPE |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if motorcycle:
        head += " Motorcycle EPE / bad-2 % |"
        rule += "---:|"
    lines = [head, rule]
    for label, report in reports.items():
        run = report["runs"][0][output]
        row = (f"| {label} | {_fmt(run['transparent']['epe'])} | {_fmt(run['transparent']['bad2'], 1)} | "
               f"{_fmt(run['opaque']['epe'])} | {_fmt(run['opaque']['bad2'], 1)} | {_fmt(run['all']['epe'])} |")
        if motorcycle:
            moto = motorcycle.get(label)
            row += (f" {_fmt(moto['runs'][0]['final']['all']['epe'])} / {_fmt(moto['runs'][0]['final']['all']['bad2'], 1)} |"
                    if moto else " – |")
        lines.append(row)
    return lines


def group_table(reports: dict[str, dict], output: str, key: str) -> list[str]:
    groups = sorted({g for r in reports.values() for g in r["runs"][0][f"by_{key}"]["groups"]} - {"none", "unknown"})
    counts = {g: next(r["runs"][0][f"by_{key}"]["groups"][g]["samples"] for r in reports.values()
                      if g in r["runs"][0][f"by_{key}"]["groups"]) for g in groups}
    lines = [f"| glass EPE by {key} | " + " | ".join(f"{g} ({counts[g]})" for g in groups) + " |",
             "|---|" + "---:|" * len(groups)]
    for label, report in reports.items():
        found = report["runs"][0][f"by_{key}"]["groups"]
        cells = [_fmt(found[g][output]["transparent"].get("epe")) if g in found else "–" for g in groups]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--exclude-occluded", action="store_true")
    parser.add_argument("--motorcycle", type=Path, default=None)
    parser.add_argument("--output", choices=("final", "base"), default="final")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [spec.split("=", 1) if "=" in spec else (Path(spec).stem, spec) for spec in args.models]
    reports = {label: scored(label, model, args.data, args.out_dir, args.exclude_occluded, ("kind", "lighting"))
               for label, model in pairs}
    motorcycle = {}
    if args.motorcycle is not None:
        motorcycle = {label: scored(f"{label}.motorcycle", model, args.motorcycle, args.out_dir, False, ())
                      for label, model in pairs}
    region = "non-occluded" if args.exclude_occluded else "all labeled"
    print(f"{args.data}, {region} pixels, output: {args.output}\n")
    for table in (overall_table(reports, args.output, motorcycle), group_table(reports, args.output, "kind"),
                  group_table(reports, args.output, "lighting")):
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    try:
        main()
    except PolstereoError as err:  # a missing or broken model or data file: one line, not a traceback
        sys.exit(f"Error: {err}")
