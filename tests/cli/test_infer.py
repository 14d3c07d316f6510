"""``polstereo infer`` on the command line: a thin layer with one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from polstereo.cli import main as cli_main
from polstereo.cli.infer import infer_cmd
from tests.inference.conftest import tiny_ckpt, write_mosaic_pair, write_ordinary  # noqa: F401

FAST = ["--device", "cpu", "--amp", "off", "--iters", "1"]


@pytest.fixture
def invoke(monkeypatch):
    """Run through the real group (so PolstereoError becomes 'Error: ...'), with infer registered."""
    monkeypatch.setitem(cli_main.COMMANDS, "infer", "polstereo.cli.infer:infer_cmd")
    return lambda *args: CliRunner().invoke(cli_main.cli, ["infer", *map(str, args)])


def test_mosaic_pair_with_json_summary(tmp_path, rng, tiny_ckpt):
    left, right = write_mosaic_pair(tmp_path, rng)
    result = CliRunner().invoke(infer_cmd, [str(tiny_ckpt), "--left", str(left), "--right", str(right), "--mosaic",
                                            "IMX250MZR", "--bit-depth", "12", "--out", str(tmp_path / "out"),
                                            "--format", "pfm,png16", "--json", *FAST])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (pair,) = summary["pairs"]
    assert pair["correction_applied"] and "arrays" not in pair
    assert {"disparity.pfm", "disparity.png", "correction.npy", "aolp_dolp.png"} <= set(pair["files"])
    assert (tmp_path / "out" / "cap_left" / "disparity.pfm").is_file()


def test_ordinary_pair_prints_exactly_one_no_correction_line(tmp_path, rng, tiny_ckpt, invoke):
    left, right = write_ordinary(tmp_path / "im0.png", rng), write_ordinary(tmp_path / "im1.png", rng)
    result = invoke(tiny_ckpt, "--left", left, "--right", right, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "no polarization correction" in line]
    assert len(notes) == 1


def test_missing_input_is_a_one_line_error(tmp_path, tiny_ckpt, invoke):
    result = invoke(tiny_ckpt, "--left", tmp_path / "nope.png", "--right", tmp_path / "nope.png",
                    "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert result.output.startswith("Error: --left: no such file") and result.output.count("\n") == 1


def test_mismatched_sizes_are_a_one_line_error(tmp_path, rng, tiny_ckpt, invoke):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng, h=40)
    result = invoke(tiny_ckpt, "--left", left, "--right", right, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1 and "but right is 40x64" in result.output
    assert result.output.count("\n") == 1


def test_missing_checkpoint_is_a_one_line_error(tmp_path, rng, invoke):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    result = invoke(tmp_path / "none.ckpt", "--left", left, "--right", right, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1 and "model file not found" in result.output and result.output.count("\n") == 1


def test_unknown_format_is_a_usage_error(tmp_path, tiny_ckpt, invoke):
    result = invoke(tiny_ckpt, "--left", "a", "--right", "b", "--out", tmp_path, "--format", "tiff")
    assert result.exit_code == 2 and "unknown format(s) tiff" in result.output


def test_a_bad_pair_in_a_batch_is_reported_and_the_others_are_written(tmp_path, rng):
    import numpy as np
    from click.testing import CliRunner

    from polstereo.cli.main import cli
    from polstereo.io.images import write_image
    from polstereo.models.files import save_model
    from polstereo.models.registry import build_model

    save_model(tmp_path / "m.ckpt", build_model({"base": "tiny"}))
    for view in ("L", "R"):
        (tmp_path / view).mkdir()
        for name in ("a", "c"):
            write_image(tmp_path / view / f"{name}.png", (rng.random((32, 48)) * 255).astype(np.uint8))
    (tmp_path / "L" / "b.png").write_bytes(b"not a png")
    write_image(tmp_path / "R" / "b.png", (rng.random((32, 48)) * 255).astype(np.uint8))
    result = CliRunner().invoke(cli, ["infer", str(tmp_path / "m.ckpt"), "--left", str(tmp_path / "L"), "--right",
                                      str(tmp_path / "R"), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: 1 of 3 pair(s) failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "c"]
