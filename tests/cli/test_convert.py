import json

import numpy as np
import pytest
from click.testing import CliRunner

from polstereo.cli import main as cli_main
from polstereo.cli.convert import LAYOUTS, ROLE_HELP, ROLE_OPTIONS
from polstereo.data.converters import CONVERTERS
from polstereo.data.h5 import H5Reader, validate
from polstereo.io.images import write_disparity, write_image
from polstereo.polar.mosaic import mosaic
from tests.data.converters.fixtures import write_folder_dataset, write_mitsuba_sample


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Run through the real group (one-line errors, exit codes) whether or not it is registered yet."""
    monkeypatch.setitem(cli_main.COMMANDS, "convert-dataset", "polstereo.cli.convert:convert_dataset_cmd")


def run(*args):
    return CliRunner().invoke(cli_main.cli, ["convert-dataset", *map(str, args)])


@pytest.fixture
def src(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 5)
    return tmp_path / "src"


def split_names(out):
    names = {}
    for path in sorted(out.glob("*.h5")):
        reader = H5Reader(path)
        names[path.stem] = [reader.read(i, fields=()).name for i in range(len(reader))]
    return names


def test_folder_layout_writes_valid_split_files_and_a_summary(src, tmp_path):
    result = run(src, tmp_path / "out", "--split", 0.6, 0.2, 0.2, "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.h5", "train.h5", "val.h5"]
    assert all(validate(p) == [] for p in (tmp_path / "out").iterdir())
    assert "converted 5 samples" in result.output and "train:     3" in result.output


def test_json_report_lists_counts_and_skips(src, tmp_path):
    (src / "s02" / "left_45.png").write_bytes(b"\x89PNG corrupt")
    result = run(src, tmp_path / "out", "--split", 1, 0, 0, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["written"] == {"train": 4} and report["total_written"] == 4
    assert report["skipped"][0]["name"] == "s02" and report["skipped"][0]["kind"] == "corrupt file"
    assert "left_45.png: not a readable image" in report["skipped"][0]["detail"]


def test_skipped_sample_is_printed_with_its_reason(src, tmp_path):
    (src / "s01" / "mask.png").unlink()
    result = run(src, tmp_path / "out")
    assert result.exit_code == 0
    assert "skipped 1 samples (1 missing file):" in result.output and "s01: missing file: mask (mask.*)" in result.output


def test_same_seed_same_split_other_seed_other_split(src, tmp_path):
    for out, seed in (("a", 0), ("b", 0), ("c", 7)):
        assert run(src, tmp_path / out, "--split", 0.4, 0.3, 0.3, "--seed", seed).exit_code == 0
    assert split_names(tmp_path / "a") == split_names(tmp_path / "b")
    assert split_names(tmp_path / "a") != split_names(tmp_path / "c")


def test_split_file_option(src, tmp_path):
    (tmp_path / "splits.txt").write_text("s00 test\ns01 train\ns02 train\n")
    result = run(src, tmp_path / "out", "--split-file", tmp_path / "splits.txt")
    assert result.exit_code == 0, result.output
    assert split_names(tmp_path / "out") == {"test": ["s00"], "train": ["s01", "s02"]}


def test_custom_pattern_option_and_workers(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 3)
    for d in (tmp_path / "src").iterdir():
        (d / "mask.png").rename(d / "transparent.png")
    result = run(tmp_path / "src", tmp_path / "out", "--mask", "transparent.png", "--split", 1, 0, 0, "-j", 2)
    assert result.exit_code == 0, result.output
    assert len(H5Reader(tmp_path / "out" / "train.h5")) == 3


def test_missing_src_is_a_usage_error(tmp_path):
    result = run(tmp_path / "nope", tmp_path / "out")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_unknown_layout_is_a_usage_error(src, tmp_path):
    result = run(src, tmp_path / "out", "--layout", "blender")
    assert result.exit_code == 2 and "blender" in result.output


def test_pattern_for_a_role_the_layout_lacks_is_a_usage_error(src, tmp_path):
    result = run(src, tmp_path / "out", "--depth", "depth.exr")
    assert result.exit_code == 2 and result.output.startswith("Error: layout 'folder' has no file role")


def test_existing_output_needs_overwrite(src, tmp_path):
    assert run(src, tmp_path / "out").exit_code == 0
    again = run(src, tmp_path / "out")
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    assert len(again.output.strip().splitlines()) == 1
    assert run(src, tmp_path / "out", "--overwrite").exit_code == 0


def test_nothing_convertible_exits_1_and_writes_nothing(src, tmp_path):
    result = run(src, tmp_path / "out", "--disparity", "nothing.pfm")
    assert result.exit_code == 1
    assert "Error: no sample converted" in result.output and "s00: missing file: disparity (nothing.pfm)" in result.output
    assert not list(tmp_path.glob("out/*.h5"))


def test_mosaic_layout_through_the_cli(tmp_path, rng):
    raw = rng.integers(0, 4096, (12, 16)).astype(np.uint16)
    sample_dir = tmp_path / "src" / "cap0"
    write_image(sample_dir / "left_raw.png", raw)
    write_image(sample_dir / "right_raw.png", raw)
    write_disparity(sample_dir / "disparity.png", np.full((12, 16), 2.5, np.float32))
    write_image(sample_dir / "mask.png", np.zeros((12, 16), np.uint8))
    result = run(tmp_path / "src", tmp_path / "out", "--layout", "mosaic", "--bit-depth", 12, "--split", 1, 0, 0)
    assert result.exit_code == 0, result.output
    sample = H5Reader(tmp_path / "out" / "train.h5").read(0, normalize=False)
    assert sample.white_level == 4095 and np.array_equal(mosaic(sample.left), raw)
    assert np.allclose(sample.disparity, 2.5)


def test_mitsuba_layout_through_the_cli(tmp_path):
    pytest.importorskip("mitsuba", reason="mitsuba (pip install mitsuba) renders the fixture")
    write_mitsuba_sample(tmp_path / "src" / "r0", width=32, height=24)
    result = run(tmp_path / "src", tmp_path / "out", "--layout", "mitsuba", "--color", "mono",
                 "--angles", "0,60,120", "--split", 1, 0, 0)
    assert result.exit_code == 0, result.output
    reader = H5Reader(tmp_path / "out" / "train.h5")
    assert reader.angles_deg == (0, 60, 120) and reader.attrs["color"] == "mono"
    assert reader.read(0).left.shape == (3, 1, 24, 32)


def test_cli_layouts_and_roles_match_the_converter_registry():
    assert set(LAYOUTS) == set(CONVERTERS)
    assert set(ROLE_OPTIONS) == {role for cls in CONVERTERS.values() for role in cls.roles}


def test_role_help_quotes_each_layouts_default_pattern():
    for cls in CONVERTERS.values():
        for role, file_role in cls.roles.items():
            assert file_role.pattern in ROLE_HELP[role], (cls.name, role)
