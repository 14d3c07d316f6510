"""Per-sample and per-kind views of ``polstereo eval``: the ``--per-sample`` CSV and ``--by``.

Both start from the per-sample values of :func:`~polstereo.evaluation.evaluate.evaluate_model`
(``EvalResult.per_sample``, ``runs[i].per_sample`` in ``eval --json``): per sample its
``name``, ``index``, recorded ``glass_kinds`` (a list; ``[]`` no glass, None not recorded)
and ``lighting`` (None: not recorded), ``saturation_fraction`` and ``base`` / ``final``
metrics per region (``{region: {"pixels", "epe", "bad2", ...}}``, docs/metrics.md).

:func:`aggregate` is sample-averaged, unlike the dataset values of ``eval`` (pixel-weighted):
a group's value for a region is the mean of its samples' values, over the samples that
have pixels of that region. Per glass kind, a sample's glass EPE covers all its glass, so
a sample with a sphere and a pane counts in both rows.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.io.atomic import atomic_path

BY_KEYS = ("kind", "lighting")
UNKNOWN = "unknown"   # group of the samples that do not record the grouping attribute
NO_GLASS = "none"     # kind group of the samples that record no glass
OUTPUTS = ("base", "final")
REGIONS = ("transparent", "opaque", "all")
CSV_METRICS = ("epe", "bad2")
PER_SAMPLE_COLUMNS = (
    "index", "sample", "iters", "glass_kinds", "lighting",
    *(f"{region}_pixels" for region in REGIONS),
    *(f"{output}_{region}_{metric}" for region in REGIONS for output in OUTPUTS for metric in CSV_METRICS),
    "saturation_fraction",
)


# ------------------------------------------------------------------------------ --per-sample CSV
def check_csv_path(path: str | Path) -> None:
    """Refuse, before any work, a CSV path whose folder does not exist or that is a folder."""
    path = Path(path)
    if path.is_dir():
        raise PolstereoError(f"{path}: is a directory; --per-sample needs a file name (e.g. {path / 'samples.csv'})")
    parent = path.parent
    if not parent.is_dir():
        raise PolstereoError(f"{path}: folder {parent} does not exist")


def _cell(value: Any) -> str:
    """A CSV cell: empty for a missing or undefined (NaN) value, full precision for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def kinds_cell(glass_kinds: Sequence[str] | None) -> str:
    """``glass_kinds`` as text: comma-separated; ``none`` for no glass, ``""`` when not recorded."""
    if glass_kinds is None:
        return ""
    return ",".join(glass_kinds) if glass_kinds else NO_GLASS


def per_sample_row(entry: dict, iters: int | None = None) -> dict[str, str]:
    """One CSV row (:data:`PER_SAMPLE_COLUMNS` -> text) of a per-sample entry; a region the
    sample does not have (no transparency mask) or without pixels gives empty metric cells."""
    row = {"index": _cell(entry.get("index")), "sample": entry.get("name", ""), "iters": _cell(iters),
           "glass_kinds": kinds_cell(entry.get("glass_kinds")), "lighting": _cell(entry.get("lighting")),
           "saturation_fraction": _cell(entry.get("saturation_fraction"))}
    for region in REGIONS:
        pixels = entry["final"].get(region, {}).get("pixels")
        row[f"{region}_pixels"] = _cell(pixels)
        for output in OUTPUTS:
            values = entry[output].get(region, {})
            for metric in CSV_METRICS:
                row[f"{output}_{region}_{metric}"] = _cell(values.get(metric) if values.get("pixels") else None)
    return {column: row[column] for column in PER_SAMPLE_COLUMNS}


def per_sample_csv(runs: Sequence[dict]) -> str:
    """The CSV text of ``runs`` (``eval``'s ``runs``: ``iters`` and ``per_sample`` each): a
    header, then one row per sample and run, runs in order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=PER_SAMPLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        for entry in run["per_sample"]:
            writer.writerow(per_sample_row(entry, run.get("iters")))
    return out.getvalue()


def write_per_sample_csv(path: str | Path, runs: Sequence[dict]) -> int:
    """Write :func:`per_sample_csv` to ``path`` atomically; returns the number of rows."""
    text = per_sample_csv(runs)
    try:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(text)
    except OSError as err:
        raise PolstereoError(f"{path}: cannot write ({err.strerror or err})") from None
    return text.count("\n") - 1


# ------------------------------------------------------------------------------ --by kind|lighting
def check_by(key: str) -> str:
    if key not in BY_KEYS:
        raise PolstereoError(f"cannot group by {key!r}; use one of {', '.join(BY_KEYS)}", EXIT_USAGE)
    return key


def groups_of(entry: dict, by: str) -> list[str]:
    """The groups a per-sample entry belongs to: its distinct glass kinds (``none`` for no
    glass) or its lighting; ``unknown`` when the sample does not record it."""
    if check_by(by) == "lighting":
        return [entry.get("lighting") or UNKNOWN]
    kinds = entry.get("glass_kinds")
    if kinds is None:
        return [UNKNOWN]
    return list(dict.fromkeys(kinds)) or [NO_GLASS]


def _mean_over(entries: Sequence[dict], output: str, region: str) -> dict[str, Any]:
    """Sample-averaged EPE and bad-2 of one output and region over the entries with pixels of it."""
    having = [e[output][region] for e in entries if e[output].get(region, {}).get("pixels")]
    if not having:
        return {"samples": 0, "epe": None, "bad2": None}
    return {"samples": len(having), **{m: sum(float(v[m]) for v in having) / len(having) for m in CSV_METRICS}}


def summarize(entries: Sequence[dict]) -> dict[str, Any]:
    """``{"samples": n, "base"|"final": {region: {"samples", "epe", "bad2"}}}`` of a group of entries;
    ``samples`` of a region counts the entries with pixels of it (None values when there are none)."""
    return {"samples": len(entries),
            **{output: {region: _mean_over(entries, output, region) for region in REGIONS} for output in OUTPUTS}}


def aggregate(per_sample: Sequence[dict], by: str = "kind") -> dict[str, Any]:
    """Sample-averaged results per glass kind (``by="kind"``) or lighting family (``"lighting"``).

    Returns ``{"by", "recorded": samples that record the attribute, "groups": {name:
    summary}, "all_samples": summary}`` (:func:`summarize`), groups sorted by name with
    ``none`` (kinds: samples without glass) and ``unknown`` (not recorded) last.
    """
    check_by(by)
    members: dict[str, list[dict]] = {}
    for entry in per_sample:
        for name in groups_of(entry, by):
            members.setdefault(name, []).append(entry)
    last = {NO_GLASS: 1, UNKNOWN: 2}
    order = sorted(members, key=lambda name: (last.get(name, 0), name))
    recorded = sum(UNKNOWN not in groups_of(e, by) for e in per_sample)
    return {"by": by, "recorded": recorded, "groups": {name: summarize(members[name]) for name in order},
            "all_samples": summarize(per_sample)}


def _pair(summary: dict, region: str, metric: str, with_base: bool, width: int, digits: int) -> str:
    values = [summary[output][region][metric] for output in (OUTPUTS if with_base else ("final",))]
    text = " → ".join("-" if v is None else f"{v:.{digits}f}" for v in values)
    return f"{text:>{width}}"


def aggregate_lines(result: dict, with_base: bool = True) -> list[str]:
    """The printed table of :func:`aggregate`'s ``result``: per group the samples, glass EPE and
    bad-2, opaque EPE (base → final when ``with_base``). A file that records nothing gets one line."""
    by = result["by"]
    attribute = "glass_kinds" if by == "kind" else "lighting"
    if not result["recorded"]:
        return [f"  per {by}: no sample records its {attribute} attribute (docs/format.md); overall results only"]
    width = 17 if with_base else 8
    title = "base → final, " if with_base else ""
    lines = [f"  per {by} ({title}means over the samples that contain each; glass = transparent pixels):",
             f"  {by:<16} {'samples':>7} {'glass EPE':>{width}} {'glass bad-2 %':>{width}} {'opaque EPE':>{width}}"]
    rows = [*result["groups"].items(), ("(all samples)", result["all_samples"])]
    for name, summary in rows:
        lines.append(f"  {name:<16} {summary['samples']:>7d} "
                     f"{_pair(summary, 'transparent', 'epe', with_base, width, 3)} "
                     f"{_pair(summary, 'transparent', 'bad2', with_base, width, 1)} "
                     f"{_pair(summary, 'opaque', 'epe', with_base, width, 3)}")
    return lines
