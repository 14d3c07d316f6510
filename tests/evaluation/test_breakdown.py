"""Per-sample CSV rows and per-kind / per-lighting aggregates of eval's per-sample values."""

import csv
import io
import math

import pytest

from polstereo.errors import PolstereoError
from polstereo.evaluation.breakdown import (PER_SAMPLE_COLUMNS, aggregate, aggregate_lines, check_csv_path,
                                            per_sample_csv, per_sample_row)


def region(pixels, epe, bad2):
    return {"pixels": pixels, "epe": epe if pixels else math.nan, "bad2": bad2 if pixels else math.nan}


def entry(name, kinds, lighting, glass, opaque, final_glass=None):
    """A per-sample entry as evaluate_model makes it: glass/opaque = (pixels, epe, bad2) of the base;
    the final output has ``final_glass`` on glass (default the base's) and the base's opaque values."""
    base = {"transparent": region(*glass), "opaque": region(*opaque), "all": region(glass[0] + opaque[0], 9.0, 9.0)}
    final = dict(base, transparent=region(*(final_glass or glass)))
    return {"name": name, "index": 0, "glass_kinds": kinds, "lighting": lighting, "saturation_fraction": 0.5,
            "base": base, "final": final}


SAMPLES = [
    entry("a", ["solid-sphere"], "window-env", (10, 4.0, 50.0), (90, 1.0, 5.0), final_glass=(10, 2.0, 20.0)),
    entry("b", ["solid-sphere", "pane"], "area-lamp", (30, 2.0, 10.0), (70, 3.0, 15.0), final_glass=(30, 1.0, 0.0)),
    entry("c", [], "window-env", (0, 0.0, 0.0), (100, 2.0, 0.0)),
    entry("d", None, None, (5, 6.0, 100.0), (95, 4.0, 40.0)),
]


def test_per_kind_means_are_averaged_over_the_samples_that_contain_each_kind():
    result = aggregate(SAMPLES, "kind")
    assert list(result["groups"]) == ["pane", "solid-sphere", "none", "unknown"]
    assert result["recorded"] == 3
    sphere = result["groups"]["solid-sphere"]
    assert sphere["samples"] == 2
    assert sphere["base"]["transparent"] == {"samples": 2, "epe": 3.0, "bad2": 30.0}  # (4 + 2) / 2, (50 + 10) / 2
    assert sphere["final"]["transparent"] == {"samples": 2, "epe": 1.5, "bad2": 10.0}
    assert sphere["base"]["opaque"]["epe"] == 2.0 and sphere["final"]["opaque"]["epe"] == 2.0
    assert result["groups"]["pane"]["final"]["transparent"]["epe"] == 1.0
    # a sample without glass counts in its group's opaque mean, not in a glass mean
    none = result["groups"]["none"]
    assert none["base"]["transparent"] == {"samples": 0, "epe": None, "bad2": None}
    assert none["base"]["opaque"]["epe"] == 2.0
    assert result["groups"]["unknown"]["base"]["transparent"]["epe"] == 6.0
    everything = result["all_samples"]
    assert everything["samples"] == 4 and everything["base"]["transparent"]["samples"] == 3
    assert everything["base"]["transparent"]["epe"] == pytest.approx((4.0 + 2.0 + 6.0) / 3)
    assert everything["base"]["opaque"]["epe"] == pytest.approx((1.0 + 3.0 + 2.0 + 4.0) / 4)


def test_per_lighting_groups_each_sample_once_and_unrecorded_lighting_is_unknown():
    result = aggregate(SAMPLES, "lighting")
    assert {name: g["samples"] for name, g in result["groups"].items()} == {"area-lamp": 1, "window-env": 2,
                                                                           "unknown": 1}
    assert result["groups"]["window-env"]["base"]["transparent"]["epe"] == 4.0  # "c" has no glass pixels
    assert result["groups"]["window-env"]["base"]["opaque"]["epe"] == 1.5


def test_a_file_without_kind_records_is_all_unknown_and_says_so_in_one_line():
    unrecorded = [dict(s, glass_kinds=None, lighting=None) for s in SAMPLES]
    result = aggregate(unrecorded, "kind")
    assert result["recorded"] == 0 and list(result["groups"]) == ["unknown"]
    lines = aggregate_lines(result)
    assert len(lines) == 1 and "no sample records its glass_kinds" in lines[0]


def test_the_kind_table_has_a_row_per_group_and_one_for_all_samples():
    lines = aggregate_lines(aggregate(SAMPLES, "kind"))
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ["pane", "solid-sphere", "none", "unknown", "(all"]
    assert "3.000 → 1.500" in rows["solid-sphere"] and "30.0 → 10.0" in rows["solid-sphere"]
    assert "- → -" in rows["none"]
    assert "→" not in "".join(aggregate_lines(aggregate(SAMPLES, "kind"), with_base=False))


def test_unknown_grouping_is_a_usage_error():
    with pytest.raises(PolstereoError, match="cannot group by 'colour'") as err:
        aggregate(SAMPLES, "colour")
    assert err.value.exit_code == 2


def test_csv_rows_leave_empty_regions_and_unrecorded_values_blank():
    rows = list(csv.DictReader(io.StringIO(per_sample_csv([{"iters": 4, "per_sample": SAMPLES}]))))
    assert tuple(rows[0]) == PER_SAMPLE_COLUMNS and [r["sample"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[0]["glass_kinds"] == "solid-sphere" and rows[1]["glass_kinds"] == "solid-sphere,pane"
    assert (rows[2]["glass_kinds"], rows[3]["glass_kinds"], rows[3]["lighting"]) == ("none", "", "")
    assert (rows[0]["iters"], rows[0]["base_transparent_epe"], rows[0]["final_transparent_bad2"]) == ("4", "4.0", "20.0")
    assert (rows[2]["transparent_pixels"], rows[2]["base_transparent_epe"], rows[2]["final_transparent_bad2"]) == (
        "0", "", "")
    assert rows[0]["saturation_fraction"] == "0.5"


def test_a_sample_without_transparency_mask_has_blank_glass_and_opaque_cells():
    only_all = {"name": "kitti", "index": 3, "glass_kinds": None, "lighting": None, "saturation_fraction": None,
                "base": {"all": region(100, 1.25, 3.0)}, "final": {"all": region(100, 1.25, 3.0)}}
    row = per_sample_row(only_all)
    assert row["all_pixels"] == "100" and row["final_all_epe"] == "1.25"
    assert row["transparent_pixels"] == row["opaque_pixels"] == row["base_opaque_epe"] == ""
    assert row["saturation_fraction"] == row["iters"] == ""


def test_csv_path_in_a_missing_folder_or_naming_a_folder_is_refused(tmp_path):
    with pytest.raises(PolstereoError, match="folder .*nowhere does not exist"):
        check_csv_path(tmp_path / "nowhere" / "s.csv")
    with pytest.raises(PolstereoError, match="is a directory"):
        check_csv_path(tmp_path)
    check_csv_path(tmp_path / "s.csv")
