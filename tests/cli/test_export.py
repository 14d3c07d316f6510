"""``polstereo export`` and ``polstereo infer --onnx`` on the command line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from polstereo.cli import main as cli_main
from polstereo.export import onnx as export_module
from tests.inference.conftest import tiny_ckpt, write_mosaic_pair, write_ordinary  # noqa: F401

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = ["--device", "cpu", "--amp", "off", "--iters", "1"]
TOLERANCE = 1e-3


def invoke(*args):
    """Run through the real group (PolstereoError -> one 'Error: ...' line), with both commands registered."""
    commands = {**cli_main.COMMANDS, "export": "polstereo.cli.export:export_cmd",
                "infer": "polstereo.cli.infer:infer_cmd"}
    original = cli_main.COMMANDS
    cli_main.COMMANDS = commands
    try:
        return CliRunner().invoke(cli_main.cli, [*map(str, args)])
    finally:
        cli_main.COMMANDS = original


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    """``(path, CLI result)``: the tiny checkpoint exported with 1 iteration and --json."""
    import torch

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    return path, invoke("export", tiny_ckpt, path, "--iters", "1", "--json")


def test_export_writes_the_file_and_prints_the_parity_check(exported):
    path, result = exported
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] and report["graph"] == "full" and report["iters"] == 1
    assert report["parity"]["passed"] and len(report["parity"]["runs"]) == 2
    assert report["parity"]["max_disparity_diff_px"] < TOLERANCE
    assert report["metadata"]["source"]["checkpoint"] == "tiny.ckpt"
    assert path.is_file()


def test_forced_parity_failure_exits_1_with_one_line_and_no_file(tmp_path, tiny_ckpt, monkeypatch):
    real = export_module._reference_outputs
    monkeypatch.setattr(export_module, "_reference_outputs",
                        lambda graph, left, right: {k: v + 1.0 for k, v in real(graph, left, right).items()})
    out = tmp_path / "m.onnx"
    result = invoke("export", tiny_ckpt, out, "--base-only", "--iters", "1", "--json")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ONNX parity check failed") and result.stderr.count("\n") == 1
    report = json.loads(result.stdout)
    assert report["written"] is False and report["parity"]["worst"]["value"] > 0.99
    assert list(tmp_path.iterdir()) == []


def test_export_without_onnxruntime_is_a_one_line_install_hint(tmp_path, tiny_ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = invoke("export", tiny_ckpt, tmp_path / "m.onnx")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "pip install polstereo[export]" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["mosaic", "ordinary"])
def test_infer_onnx_gives_the_checkpoints_disparity(tmp_path, rng, tiny_ckpt, exported, kind):
    if kind == "mosaic":
        left, right = write_mosaic_pair(tmp_path, rng)
        inputs = ["--left", left, "--right", right, "--mosaic", "IMX250MZR", "--bit-depth", "12"]
    else:
        # grey: the graph's stacks are mono like the checkpoint's correction module
        left, right = (write_ordinary(tmp_path / f"{v}.png", rng, channels=1) for v in "lr")
        inputs = ["--left", left, "--right", right]
    runs = {}
    for model in ("checkpoint", "onnx"):
        source = [tiny_ckpt] if model == "checkpoint" else ["--onnx", exported[0]]
        result = invoke("infer", *source, *inputs, "--out", tmp_path / model, "--format", "npy", "--json", *FAST)
        assert result.exit_code == 0, result.output
        (pair,) = json.loads(result.stdout)["pairs"]
        runs[model] = pair
    for name in ("disparity.npy", *(["correction.npy"] if kind == "mosaic" else [])):
        np.testing.assert_allclose(np.load(runs["onnx"]["files"][name]), np.load(runs["checkpoint"]["files"][name]),
                                   atol=TOLERANCE, rtol=0)
    assert runs["onnx"]["correction_applied"] == (kind == "mosaic")
    assert runs["onnx"]["saturation_fraction"] == runs["checkpoint"]["saturation_fraction"]


def test_infer_takes_an_onnx_file_in_place_of_the_checkpoint(tmp_path, rng, exported):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    result = invoke("infer", exported[0], "--left", left, "--right", right, "--out", tmp_path / "o", "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["onnx"] == str(exported[0])
    # colour pair, mono graph: said once, on stderr
    assert result.stderr.count("colour input was converted to its luminance") == 1


@pytest.mark.parametrize("source", [[], ["CKPT", "--onnx", "x.onnx"]])
def test_infer_needs_exactly_one_of_checkpoint_and_onnx(tmp_path, source):
    result = invoke("infer", *source, "--left", "l.png", "--right", "r.png", "--out", tmp_path)
    assert result.exit_code == 2 and "exactly one" in result.output


def test_infer_onnx_with_other_iterations_is_a_one_line_error(tmp_path, rng, exported):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    result = invoke("infer", "--onnx", exported[0], "--left", left, "--right", right, "--out", tmp_path / "o",
                    "--iters", "3")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "exported with 1 refinement iterations" in result.output


@pytest.fixture
def s2m2_ckpt(tmp_path, monkeypatch):
    """A saved model on the S2M2 wrapper; the official constructor is replaced by the stand-in."""
    import polstereo.models.base.s2m2 as s2m2_module
    from polstereo.models import save_model
    from tests.export.conftest import s2m2_model
    from tests.models.test_s2m2 import StandIn

    monkeypatch.setattr(s2m2_module, "official_factory", StandIn)
    return save_model(tmp_path / "s2m2.ckpt", s2m2_model())


def test_export_of_an_s2m2_model_without_input_size_says_to_pass_it(tmp_path, s2m2_ckpt):
    result = invoke("export", s2m2_ckpt, tmp_path / "m.onnx")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "--input-size W H" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_of_an_s2m2_model_at_a_fixed_size_in_wxh_form(tmp_path, s2m2_ckpt):
    import torch

    torch.set_num_threads(1)
    result = invoke("export", s2m2_ckpt, tmp_path / "m.onnx", "--input-size", "40x24", "--iters", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["input_size"] == [40, 24] and report["metadata"]["input_size"] == {"width": 40, "height": 24}
    assert "fixed input size 40x24" in result.stderr
