import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.data.h5 import H5Reader
from polstereo.models.files import save_model
from polstereo.models.registry import build_model
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    save_model(d / "base.ckpt", build_model({"base": "tiny"}))
    save_model(d / "full.ckpt", build_model({"base": "tiny", "correction": True, "max_correction": 3.0}))
    return d


def test_check_feasibility_exit_codes_follow_the_verdict(tiny_data, checkpoints, tmp_path):
    ok = invoke("check-feasibility", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5",
                "--max-correction", "1000", "--json", tmp_path / "ok.json")
    assert ok.exit_code == 0, ok.output
    assert "FEASIBLE" in ok.output
    report = json.loads((tmp_path / "ok.json").read_text())
    assert report["feasible"] and report["region"] == "transparent"
    t = report["errors"]["transparent"]
    assert t["median"] <= t["p90"] and t["within_max_correction"] == 1.0
    bad = invoke("check-feasibility", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5",
                 "--max-correction", "0.0001")
    assert bad.exit_code == 3
    assert bad.output.splitlines()[-1].startswith("Error: infeasible: base mean error on transparent pixels")


def test_check_feasibility_statistic_is_the_one_compared(tiny_data, checkpoints):
    out = invoke("check-feasibility", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5",
                 "--max-correction", "1000", "--statistic", "p90", "--json")
    report = json.loads(out.output)
    assert report["statistic"] == "p90" and report["value"] == report["errors"]["transparent"]["p90"]


def test_check_feasibility_reports_saturation_with_a_correction_module(tiny_data, checkpoints):
    # stdout holds only the JSON; the verdict's error line (if any) goes to stderr
    report = json.loads(invoke("check-feasibility", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5",
                               "--json").stdout)
    assert report["max_correction"] == 3.0 and 0.0 <= report["saturation_fraction"] <= 1.0


def test_eval_reports_base_and_final_per_region_and_iters(tiny_data, checkpoints, tmp_path):
    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--iters", "1",
                    "--iters", "2", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["iters"] for r in report["runs"]] == [1, 2]
    run = report["runs"][0]
    assert run["samples"] == 2 and len(run["per_sample"]) == 2
    reader = H5Reader(tiny_data / "val.h5")
    transparent = sum(int(s.transparent.sum()) for s in reader)
    assert run["final"]["transparent"]["pixels"] == transparent
    assert run["final"]["all"]["pixels"] == 2 * 40 * 56
    # the correction is bounded: final and base EPE differ by at most max_correction
    assert abs(run["final"]["all"]["epe"] - run["base"]["all"]["epe"]) <= 3.0
    assert "EPE reduction by the correction" in result.output


def test_eval_of_base_only_checkpoint_says_so(tiny_data, checkpoints):
    result = invoke("eval", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5")
    assert result.exit_code == 0 and "base only: no correction module" in result.output


def test_eval_on_unlabeled_data_is_an_error(checkpoints, tmp_path, rng):
    from polstereo.data.h5 import write_samples
    from tests.conftest import make_sample

    s = make_sample(rng)
    s.disparity = None
    write_samples(tmp_path / "u.h5", [s])
    result = invoke("eval", checkpoints / "base.ckpt", "--data", tmp_path / "u.h5")
    assert result.exit_code == 1 and "no sample with a disparity map" in result.output


def test_eval_save_vis_writes_three_pictures_per_sample(tiny_data, checkpoints, tmp_path):
    from polstereo.io.images import read_image

    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--save-vis", tmp_path / "vis",
                    "--quiet")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "vis").iterdir())
    assert len(names) == 6 and {n.rsplit("_", 1)[1] for n in names} == {"pred.png", "gt.png", "error.png"}
    assert read_image(tmp_path / "vis" / names[0]).shape == (40, 56, 3)


def test_eval_save_vis_with_several_iters_writes_one_folder_per_count(tiny_data, checkpoints, tmp_path):
    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--save-vis", tmp_path / "vis",
                    "--iters", 1, "--iters", 2, "--max-samples", 1, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["iters1", "iters2"]
    for count in (1, 2):
        assert len(list((tmp_path / "vis" / f"iters{count}").glob("*.png"))) == 3
        assert f"pictures: {tmp_path / 'vis' / f'iters{count}'}" in result.output
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [run["vis_dir"] for run in runs] == [str(tmp_path / "vis" / "iters1"), str(tmp_path / "vis" / "iters2")]


def test_check_feasibility_reports_polarization_evidence(tiny_data, checkpoints):
    out = invoke("check-feasibility", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5",
                 "--max-correction", "1000")
    assert out.exit_code == 0, out.output
    assert "polarization" in out.output and "intensity" in out.output
    report = json.loads(invoke("check-feasibility", checkpoints / "base.ckpt", "--data", tiny_data / "val.h5",
                               "--max-correction", "1000", "--json").stdout)
    ev = report["errors"]["evidence"]
    assert ev["window"] == 9 and ev["min_error"] == 1.0
    # an untrained base is wrong almost everywhere, so there are pixels to judge
    assert ev["all"]["pixels"] > 0 and 0.0 <= ev["all"]["polarization"] <= 1.0
    assert ev["transparent"]["pixels"] + ev["opaque"]["pixels"] == ev["all"]["pixels"]
    assert 0.0 <= ev["all"]["polarized"] <= 1.0


def test_check_feasibility_reports_shape_evidence_for_base_and_final(tmp_path, checkpoints):
    from polstereo.data.h5 import write_samples
    from tests.evaluation.test_shape_evidence import sphere_sample

    write_samples(tmp_path / "sphere.h5", [sphere_sample()])
    result = invoke("check-feasibility", checkpoints / "full.ckpt", "--data", tmp_path / "sphere.h5",
                    "--max-correction", "1000", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "shape evidence" in result.output and "gt<base" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    shape = report["shape_evidence"]
    assert "shape_evidence" not in report["errors"] and "evidence" in report["errors"]
    assert shape["candidates"] == ["gt", "flat", "perturbed", "base", "final"]
    glass = shape["transparent"]
    assert glass["cost"]["gt"] < 0.02 and glass["pixels"] > 0
    assert 0.0 <= glass["gt_better_than"]["base"] <= 1.0 and glass["compared_pixels"]["base"] > 0


def test_eval_of_a_mono_model_on_rgb_data_equals_eval_on_their_luminance(checkpoints, tmp_path):
    """A mono correction module on RGB angle images sees their Rec. 709 luminance, as infer does."""
    import numpy as np

    from polstereo.data.h5 import write_samples
    from polstereo.polar.color import luma
    from tests.conftest import make_sample

    rng = np.random.default_rng(3)
    rgb = [make_sample(rng, h=32, w=48, dtype=np.float32, channels=3) for _ in range(2)]
    mono = [dataclasses.replace(s, left=luma(s.left, axis=1), right=luma(s.right, axis=1)) for s in rgb]
    write_samples(tmp_path / "rgb.h5", rgb, color="rgb")
    write_samples(tmp_path / "mono.h5", mono)
    results = {}
    for name in ("rgb", "mono"):
        run = invoke("eval", checkpoints / "full.ckpt", "--data", tmp_path / f"{name}.h5",
                     "--json", tmp_path / f"{name}.json")
        assert run.exit_code == 0, run.output
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())["runs"][0]["final"]["all"]["epe"]
    assert results["rgb"] == pytest.approx(results["mono"], rel=1e-4)


def _kinds_file(path, kinds):
    """Samples of the tiny kind, one per entry of ``kinds`` (None: not recorded), lit alternately."""
    import numpy as np

    from polstereo.data.h5 import write_samples
    from tests.training.conftest import shifted_sample

    rng = np.random.default_rng(5)
    samples = [dataclasses.replace(shifted_sample(rng), name=f"k{i}", glass_kinds=k,
                                   lighting=None if k is None else ("overhead", "uniform")[i % 2])
               for i, k in enumerate(kinds)]
    write_samples(path, samples)
    return path


def test_eval_per_sample_csv_has_one_row_per_sample_with_the_json_values(tiny_data, checkpoints, tmp_path):
    import csv

    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--per-sample",
                    tmp_path / "s.csv", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    assert [r["sample"] for r in rows] == [s["name"] for s in run["per_sample"]] == [s.name for s in H5Reader(
        tiny_data / "val.h5")]
    for row, sample in zip(rows, run["per_sample"]):
        for output in ("base", "final"):
            for region in ("transparent", "opaque", "all"):
                assert int(row[f"{region}_pixels"]) == sample[output][region]["pixels"]
                assert float(row[f"{output}_{region}_epe"]) == sample[output][region]["epe"]
                assert float(row[f"{output}_{region}_bad2"]) == sample[output][region]["bad2"]
        assert float(row["saturation_fraction"]) == sample["saturation_fraction"]
        assert row["glass_kinds"] == row["lighting"] == "" and int(row["iters"]) == run["iters"]
    assert f"per-sample values: {tmp_path / 's.csv'} (2 rows)" in result.output


def test_eval_per_sample_csv_with_several_iters_has_a_row_per_sample_and_count(tiny_data, checkpoints, tmp_path):
    import csv

    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--iters", 1, "--iters", 2,
                    "--per-sample", tmp_path / "s.csv", "--quiet")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [(r["iters"], r["index"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]


def test_eval_by_kind_prints_and_reports_the_per_kind_aggregate(checkpoints, tmp_path):
    from polstereo.evaluation.breakdown import aggregate

    data = _kinds_file(tmp_path / "k.h5", [("solid-sphere",), ("solid-sphere", "pane"), (), None])
    result = invoke("eval", checkpoints / "full.ckpt", "--data", data, "--by", "kind", "--by", "lighting",
                    "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    assert run["by_kind"] == aggregate(run["per_sample"], "kind")
    assert {k: g["samples"] for k, g in run["by_kind"]["groups"].items()} == {
        "pane": 1, "solid-sphere": 2, "none": 1, "unknown": 1}
    assert {k: g["samples"] for k, g in run["by_lighting"]["groups"].items()} == {
        "overhead": 2, "uniform": 1, "unknown": 1}
    assert [s["glass_kinds"] for s in run["per_sample"]] == [["solid-sphere"], ["solid-sphere", "pane"], [], None]
    table = result.output.split("per kind")[1]
    assert "solid-sphere" in table and "(all samples)" in table and "per lighting" in result.output


def test_eval_by_kind_on_a_file_without_kinds_says_so_and_keeps_the_overall_results(tiny_data, checkpoints):
    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--by", "kind",
                    "--iters", 1, "--iters", 2)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "no sample records its glass_kinds" in line]
    assert len(notes) == 1 and "EPE reduction by the correction" in result.output
    assert "transparent  final" in result.output


def test_eval_per_sample_into_a_missing_folder_fails_before_evaluating(checkpoints, tmp_path):
    result = invoke("eval", tmp_path / "no.ckpt", "--data", tmp_path / "no.h5", "--per-sample",
                    tmp_path / "missing" / "s.csv")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'missing' / 's.csv'}: folder "
                                                  f"{tmp_path / 'missing'} does not exist"]


def test_eval_by_an_unknown_key_is_a_usage_error(tiny_data, checkpoints):
    result = invoke("eval", checkpoints / "full.ckpt", "--data", tiny_data / "val.h5", "--by", "colour")
    assert result.exit_code == 2 and "'colour' is not one of 'kind', 'lighting'" in result.output
