import json

import h5py
import numpy as np
from click.testing import CliRunner

from polstereo.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_version_and_help():
    from polstereo import __version__

    assert __version__ in run("--version").output
    result = run("--help")
    assert result.exit_code == 0 and "inspect" in result.output


def test_inspect_prints_summary(h5_file):
    result = run("inspect", h5_file)
    assert result.exit_code == 0, result.output
    assert "3 samples" in result.output
    assert "40x24 x3" in result.output
    assert "schema            : valid" in result.output


def test_inspect_json_matches_data(h5_file):
    from polstereo.data.h5 import H5Reader

    result = run("inspect", h5_file, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    reader = H5Reader(h5_file)
    disps = np.concatenate([s.disparity[np.isfinite(s.disparity)] for s in reader])
    transparent = sum(int(s.transparent.sum()) for s in reader)
    assert summary["samples"] == 3 and summary["valid"] is True
    assert summary["disparity"]["max"] == float(disps.max())
    assert abs(summary["disparity"]["mean"] - float(disps.mean())) < 1e-4
    assert sum(summary["disparity"]["histogram"]["counts"]) == disps.size
    assert abs(summary["transparent_share"] - transparent / (3 * 24 * 40)) < 1e-12


def test_inspect_stats_writes_histogram_png(h5_file, tmp_path):
    import cv2

    png = tmp_path / "hist.png"
    result = run("inspect", h5_file, "--stats", "--crop", 16, 32, "--num-crops", 10, "--png", png, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "s.json").read_text())["crop_stats"]
    assert stats["crop"] == [16, 32] and stats["crops"] == 10
    assert stats["disparity"]["pixels"] <= 10 * 16 * 32
    assert cv2.imread(str(png)).shape == (360, 640, 3)


def test_inspect_stats_writes_its_png_beside_the_input_and_says_where(h5_file, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("inspect", h5_file, "--stats", "--crop", "32x16", "--num-crops", 5)
    assert result.exit_code == 0, result.output
    png = h5_file.with_name("data_crop_disparity.png")
    assert png.is_file() and not any(elsewhere.iterdir())
    assert f"histogram picture : {png}" in result.output
    assert "crops 32x16 (WxH, 5 of them)" in result.output


def test_inspect_stats_png_goes_where_stats_png_says(h5_file, tmp_path):
    png = tmp_path / "pictures" / "hist.png"
    result = run("inspect", h5_file, "--stats", "--crop", 16, 32, "--num-crops", 5, "--stats-png", png)
    assert result.exit_code == 0, result.output
    assert png.is_file() and f"histogram picture : {png}" in result.output


def test_inspect_stats_crop_larger_than_images_is_an_error(h5_file, tmp_path):
    result = run("inspect", h5_file, "--stats", "--crop", 100, 100, "--png", tmp_path / "h.png")
    assert result.exit_code == 1
    assert "no sample is at least 100x100" in result.output


def test_inspect_missing_file_is_one_line_error(tmp_path):
    result = run("inspect", tmp_path / "nope.h5")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'nope.h5'}: no such file"


def test_inspect_truncated_file_is_one_line_error(h5_file):
    data = h5_file.read_bytes()
    h5_file.write_bytes(data[: len(data) // 3])
    result = run("inspect", h5_file)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "truncated or corrupt" in result.output


def test_inspect_foreign_file_is_one_line_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 2))
    result = run("inspect", path)
    assert result.exit_code == 1 and "not a polstereo dataset" in result.output


def test_inspect_schema_violation_exits_1_and_lists_it(h5_file):
    with h5py.File(h5_file, "a") as f:
        del f["samples/000001/left"]
    result = run("inspect", h5_file)
    assert result.exit_code == 1
    assert "missing dataset 'left'" in result.output
    assert "1 schema violation(s)" in result.output


def test_unknown_command_is_usage_error():
    result = run("frobnicate")
    assert result.exit_code == 2


def test_inspect_quiet_prints_nothing_for_a_valid_file(h5_file):
    result = run("inspect", h5_file, "--quiet")
    assert result.exit_code == 0 and result.output == ""


def test_evidence_pins_the_true_disparity_on_known_data(tmp_path):
    from polstereo.data.h5 import Sample, write_samples
    from tests.evaluation.test_evidence import H, W, scene

    # polarization matches at the true 5 px, intensity at a "background" 12 px
    samples = []
    for seed in range(2):
        left, right = scene(d_pol=5, d_int=12, seed=seed)
        transparent = np.zeros((H, W), bool)
        transparent[:, W // 2:] = True
        samples.append(Sample(left=left[0].numpy(), right=right[0].numpy(), disparity=np.full((H, W), 5.0, np.float32),
                              transparent=transparent))
    path = tmp_path / "known.h5"
    write_samples(path, samples)
    result = CliRunner().invoke(cli, ["inspect", str(path), "--evidence", "--json"])
    assert result.exit_code == 0, result.output
    offsets = json.loads(result.output)["evidence"]["offsets"]
    assert sorted(float(k) for k in offsets) == [2.0, 4.0, 8.0]
    for regions in offsets.values():
        assert regions["all"]["polarization"] > 0.95
        assert regions["transparent"]["pixels"] + regions["opaque"]["pixels"] == regions["all"]["pixels"]
    # +8 px lands at 13, next to the intensity match at 12; -8 px is no disparity and not judged
    assert offsets["8.0"]["all"]["intensity"] < 0.25
    assert all("polarized" in regions["all"] for regions in offsets.values())
    text = CliRunner().invoke(cli, ["inspect", str(path), "--evidence"]).output
    assert "evidence: share of labeled pixels" in text and "polarized" in text


def test_evidence_reports_the_shape_evidence_of_the_ground_truth(tmp_path):
    from polstereo.data.h5 import write_samples
    from tests.evaluation.test_shape_evidence import sphere_sample

    path = tmp_path / "sphere.h5"
    write_samples(path, [sphere_sample(seed) for seed in range(3)])
    result = CliRunner().invoke(cli, ["inspect", str(path), "--evidence", "--max-samples", "2", "--json"])
    assert result.exit_code == 0, result.output
    shape = json.loads(result.output)["shape_evidence"]
    assert shape["candidates"] == ["gt", "flat", "perturbed"]
    glass = shape["transparent"]
    assert glass["cost"]["gt"] < 0.02 and glass["cost"]["flat"] == 0.5 and glass["gt_better_than"]["perturbed"] > 0.9
    one = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--evidence", "--max-samples", "1",
                                              "--json"]).output)["shape_evidence"]
    assert 2 * one["transparent"]["pixels"] == glass["pixels"]  # same sphere in every sample
    text = CliRunner().invoke(cli, ["inspect", str(path), "--evidence", "--max-samples", "1"]).output
    assert "shape evidence (one view, no warp)" in text and "gt<perturbed" in text


def test_evidence_needs_ground_truth(tmp_path):
    from polstereo.data.h5 import Sample, write_samples

    img = np.random.default_rng(0).random((4, 1, 16, 24)).astype(np.float32)
    write_samples(tmp_path / "raw.h5", [Sample(left=img, right=img)])
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "raw.h5"), "--evidence"])
    assert result.exit_code == 1 and "needs ground-truth disparity" in result.output


def test_inspect_says_what_a_generated_file_holds(tmp_path):
    made = run("make-synthetic", tmp_path / "d", "--num", 2, "--size", "32x24", "--glass", "thin,pane",
               "--textures", "procedural", "--split", 1, 0, 0, "--quiet")
    assert made.exit_code == 0, made.output
    result = run("inspect", tmp_path / "d" / "train.h5", "--quick")
    assert result.exit_code == 0, result.output
    assert "generated with    : glass thin,pane; textures procedural; rig none" in result.output
