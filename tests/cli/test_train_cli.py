import json

from click.testing import CliRunner

from polstereo.cli.main import cli
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)

FAST = ["--steps", "2", "--batch-size", "1", "--crop-size", "32", "48", "--workers", "0", "--iters", "1",
        "--val-every", "0", "--save-every", "0", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_three_stages_chain_from_the_command_line(tiny_data, tmp_path):
    train, val = tiny_data / "train.h5", tiny_data / "val.h5"
    a = invoke("adapt", "--init", "none", "--train", train, "--val", val, "--out", tmp_path / "A", *FAST)
    assert a.exit_code == 0, a.output
    b = invoke("learn-pol", "--init", tmp_path / "A" / "last.ckpt", "--train", train, "--val", val,
               "--out", tmp_path / "B", "--max-correction", "64", *FAST, "--json", tmp_path / "b.json")
    assert b.exit_code == 0, b.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["stage"] == "B" and report["steps_done"] == 2 and report["feasibility"]["feasible"]
    c = invoke("finetune", "--init", tmp_path / "B" / "last.ckpt", "--train", train, "--val", val,
               "--out", tmp_path / "C", *FAST)
    assert c.exit_code == 0, c.output


def test_infeasible_learn_pol_exits_3_with_one_line(tiny_data, tmp_path):
    train, val = tiny_data / "train.h5", tiny_data / "val.h5"
    assert invoke("adapt", "--train", train, "--out", tmp_path / "A", *FAST).exit_code == 0
    result = invoke("learn-pol", "--init", tmp_path / "A" / "last.ckpt", "--train", train, "--val", val,
                    "--out", tmp_path / "B", "--max-correction", "0.0001", *FAST)
    assert result.exit_code == 3
    assert result.output.startswith("Error: infeasible stage B start") and result.output.count("\n") == 1


def test_wrong_stage_order_exits_1_with_reason(tiny_data, tmp_path):
    train = tiny_data / "train.h5"
    assert invoke("adapt", "--train", train, "--out", tmp_path / "A", *FAST).exit_code == 0
    result = invoke("finetune", "--init", tmp_path / "A" / "last.ckpt", "--train", train, "--out", tmp_path / "C", *FAST)
    assert result.exit_code == 1 and "went through stage B (learn-pol)" in result.output


def test_missing_checkpoint_is_one_line_error(tiny_data, tmp_path):
    result = invoke("learn-pol", "--init", tmp_path / "none.ckpt", "--train", tiny_data / "train.h5",
                    "--out", tmp_path / "B", *FAST)
    assert result.exit_code == 1 and "not found" in result.output and result.output.count("\n") == 1


def test_untrusted_pickle_checkpoint_is_refused(tiny_data, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    import torch

    torch.save({"model_config": {}, "state_dict": {}, "x": Evil()}, evil)
    result = invoke("learn-pol", "--init", evil, "--train", tiny_data / "train.h5", "--out", tmp_path / "B", *FAST)
    assert result.exit_code == 1 and "refusing to load" in result.output and "pwned" not in result.output
    _ = pickle  # the file was written by torch.save's pickler


def test_correction_search_shapes_the_new_module_only(tiny_data, tmp_path):
    from polstereo.models.files import read_payload

    train = tiny_data / "train.h5"
    assert invoke("adapt", "--train", train, "--out", tmp_path / "A", *FAST).exit_code == 0
    b = invoke("learn-pol", "--init", tmp_path / "A" / "last.ckpt", "--train", train, "--out", tmp_path / "B",
               "--max-correction", "64", "--correction-search", "4", *FAST)
    assert b.exit_code == 0, b.output
    assert read_payload(tmp_path / "B" / "last.ckpt")["model_config"]["correction"]["search_radius"] == 4
    c = invoke("finetune", "--init", tmp_path / "B" / "last.ckpt", "--train", train, "--out", tmp_path / "C",
               "--correction-search", "2", *FAST)
    assert c.exit_code == 1
    assert c.output.splitlines()[-1].startswith("Error: --correction-search 2: the --init checkpoint already has "
                                                "a correction module with search_radius 4")
    for bad in (["--correction-search", "nan"], ["--correction-search", "1"], ["--correction-context", "flat"]):
        e = invoke("learn-pol", "--init", tmp_path / "A" / "last.ckpt", "--train", train, "--out", tmp_path / "E",
                   *bad, *FAST)
        assert e.exit_code == 2 and "Invalid value" in e.output, bad
    a = invoke("adapt", "--train", train, "--out", tmp_path / "A2", "--correction-search", "4", *FAST)
    assert a.exit_code == 1 and "stage A (adapt) trains none" in a.output
