import json

import numpy as np
import pytest
from click.testing import CliRunner

from polstereo.cli.synthetic import make_synthetic_cmd
from polstereo.data.h5 import H5Reader, validate
from polstereo.errors import PolstereoError

TINY = ["--size", "48x32", "--no-noise", "--quiet"]


def run(*args):
    return CliRunner().invoke(make_synthetic_cmd, [str(a) for a in args])


def test_make_synthetic_writes_train_val_test_files_that_validate(tmp_path):
    result = run(tmp_path / "out", "--num", 5, *TINY)
    assert result.exit_code == 0, result.output
    counts = {}
    for name in ("train", "val", "test"):
        path = tmp_path / "out" / f"{name}.h5"
        assert validate(path) == []
        counts[name] = len(H5Reader(path))
    assert counts == {"train": 3, "val": 1, "test": 1}


def test_make_synthetic_json_summary_and_options_reach_the_data(tmp_path):
    result = run(tmp_path / "out", "--num", 2, "--size", 40, 24, "--split", 1, 0, 0, "--bit-depth", 12,
                 "--transparent", 0, 0, "--max-disparity", 8, "--focal", 50, "--baseline", 0.2, "--seed", 9,
                 "--no-noise", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["num"] == 2 and summary["seed"] == 9 and list(summary["files"]) == ["train"]
    assert summary["transparent_share"] == 0.0
    reader = H5Reader(tmp_path / "out" / "train.h5")
    sample = reader.read(0, normalize=False)
    assert sample.left.shape == (4, 1, 24, 40) and sample.left.dtype == np.uint16 and sample.left.max() <= 4095
    assert (sample.focal_px, sample.baseline_m) == (50.0, 0.2)
    assert np.nanmax(sample.disparity) <= 8.0
    assert reader.attrs["provenance"]["config"]["bit_depth"] == 12


def test_size_accepts_w_h_and_wxh_alike(tmp_path):
    assert run(tmp_path / "a", "--num", 1, "--size", 40, 24, "--no-noise", "--quiet").exit_code == 0
    assert run(tmp_path / "b", "--num", 1, "--size=40x24", "--no-noise", "--quiet").exit_code == 0
    assert (tmp_path / "a" / "train.h5").read_bytes() == (tmp_path / "b" / "train.h5").read_bytes()


def test_same_seed_writes_identical_files(tmp_path):
    for name in ("a", "b"):
        assert run(tmp_path / name, "--num", 2, "--split", 1, 0, 0, "--seed", 4, *TINY).exit_code == 0
    assert (tmp_path / "a" / "train.h5").read_bytes() == (tmp_path / "b" / "train.h5").read_bytes()


def test_split_not_summing_to_one_is_a_usage_error_and_writes_nothing(tmp_path):
    result = run(tmp_path / "out", "--num", 2, "--split", 0.5, 0.5, 0.5, *TINY)
    assert isinstance(result.exception, PolstereoError) and result.exception.exit_code == 2
    assert "summing to 1" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    result = run(tmp_path / "taken", "--num", 1, *TINY)
    assert result.exit_code == 2 and "is a file" in result.output


@pytest.mark.parametrize("args", [["--size", "48by32"], ["--bit-depth", "10"], ["--num", "0"]])
def test_malformed_options_are_rejected_by_the_parser(tmp_path, args):
    result = run(tmp_path / "out", *args)
    assert result.exit_code == 2


def run_group(*args):
    from polstereo.cli.main import cli

    return CliRunner().invoke(cli, ["make-synthetic", *map(str, args)])


def test_an_earlier_set_is_refused_without_overwrite_and_left_intact(tmp_path):
    assert run(tmp_path / "out", "--num", 3, *TINY).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    result = run_group(tmp_path / "out", "--num", 3, "--seed", 1, *TINY)
    assert result.exit_code == 1
    assert f"{tmp_path / 'out' / 'train.h5'} exists (output of an earlier run); pass --overwrite" in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_overwrite_replaces_the_set_and_removes_stale_splits(tmp_path):
    assert run(tmp_path / "out", "--num", 3, *TINY).exit_code == 0
    result = run(tmp_path / "out", "--num", 2, "--split", 1, 0, 0, "--seed", 5, "--overwrite", *TINY)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.h5"]
    assert H5Reader(tmp_path / "out" / "train.h5").attrs["provenance"]["seed"] == 5


def test_an_interrupted_overwrite_leaves_the_old_set_whole(tmp_path, monkeypatch):
    from polstereo.data.synthetic import generate

    assert run(tmp_path / "out", "--num", 3, *TINY).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    real = generate._sample_at

    def ctrl_c_in_the_last_split(config, index):
        if index == 2:  # train.h5 and val.h5 of the new set are complete by now
            raise KeyboardInterrupt
        return real(config, index)
    monkeypatch.setattr(generate, "_sample_at", ctrl_c_in_the_last_split)
    result = run_group(tmp_path / "out", "--num", 3, "--seed", 8, "--overwrite", *TINY)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # no staging dir either


def test_rig_preset_reaches_the_data_and_explicit_options_win(tmp_path):
    result = run(tmp_path / "out", "--num", 1, "--split", 1, 0, 0, "--rig", "tabletop-12mm-b6", "--size", 64, 48,
                 "--bit-depth", 16, "--no-noise", "--quiet")
    assert result.exit_code == 0, result.output
    reader = H5Reader(tmp_path / "out" / "train.h5")
    config = reader.attrs["provenance"]["config"]
    assert config["rig"] == "tabletop-12mm-b6" and config["extinction_ratio"] == 200.0
    assert config["bit_depth"] == 16 and config["baseline_m"] == 0.06
    assert reader.read(0, normalize=False).focal_px == pytest.approx(12 / 3.45e-3 * 64 / 2448)


def test_extinction_ratio_inf_makes_a_rig_preset_ideal(tmp_path):
    result = run(tmp_path / "out", "--num", 1, "--split", 1, 0, 0, "--rig", "bin-picking-8mm-b5",
                 "--extinction-ratio", "inf", *TINY)
    assert result.exit_code == 0, result.output
    assert H5Reader(tmp_path / "out" / "train.h5").attrs["provenance"]["config"]["extinction_ratio"] is None


def test_texture_options_reach_the_provenance(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "mine.png"), np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8))
    result = run(tmp_path / "out", "--num", 1, "--split", 1, 0, 0, "--textures", "photo", "--texture-dir", folder,
                 *TINY)
    assert result.exit_code == 0, result.output
    config = H5Reader(tmp_path / "out" / "train.h5").attrs["provenance"]["config"]
    assert (config["textures"], config["texture_dir"]) == ("photo", str(folder))


@pytest.mark.parametrize("args, message", [
    (["--texture-dir", "nowhere"], "no such folder"),
    (["--textures", "procedural", "--texture-dir", "."], "texture folder needs photo textures"),
    (["--extinction-ratio", "1"], "--extinction-ratio"),
    (["--rig", "tabletop"], "--rig"),
    (["--lighting", "disco"], "lighting must be"),
    (["--polarization", "jones"], "--polarization"),
    (["--exposure", "0.3", "0.1"], "exposure range must satisfy 0 < min <= max <= 1"),
    (["--exposure", "0", "0.1"], "--exposure"),
])
def test_bad_texture_sensor_lighting_and_polarization_options_are_one_line_usage_errors(tmp_path, args, message):
    result = run_group(tmp_path / "out", "--num", 1, *TINY, *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_lighting_and_polarization_options_reach_the_provenance_and_the_samples(tmp_path):
    result = run(tmp_path / "out", "--num", 2, "--split", 1, 0, 0, "--lighting", "uniform, overhead",
                 "--polarization", "shared-plane", "--glass", "slab", "--exposure", "0.05", "0.1", *TINY)
    assert result.exit_code == 0, result.output
    reader = H5Reader(tmp_path / "out" / "train.h5")
    config = reader.attrs["provenance"]["config"]
    assert (config["lighting"], config["polarization"], config["glass"]) == (["uniform", "overhead"],
                                                                             "shared-plane", ["slab"])
    assert config["exposure"] == [0.05, 0.1]
    assert {reader.read(i).lighting for i in range(2)} <= {"uniform", "overhead"}


def test_the_default_set_draws_the_new_glass_kinds_lighting_and_renderer(tmp_path):
    assert run(tmp_path / "out", "--num", 1, "--split", 1, 0, 0, *TINY).exit_code == 0
    config = H5Reader(tmp_path / "out" / "train.h5").attrs["provenance"]["config"]
    assert config["glass"] == ["solid", "thin", "pane", "slab"] and config["polarization"] == "mueller"
    assert config["lighting"] == ["window-env", "area-lamp", "overhead", "uniform"]
    assert (config["prisms"], config["pane_orientation"], config["exposure"]) == (True, "any", [0.18, 0.32])
