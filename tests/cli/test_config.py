import json

import torch
import yaml
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.training.checkpoint import load_checkpoint
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)

FAST = ["--steps", "2", "--batch-size", "1", "--crop-size", "32", "48", "--workers", "0", "--iters", "1",
        "--val-every", "0", "--save-every", "0", "--quiet", "--deterministic"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_resolved_config_repeats_a_run_exactly(tiny_data, tmp_path):
    first = invoke("adapt", "--train", tiny_data / "train.h5", "--out", tmp_path / "one", "--seed", "4", *FAST)
    assert first.exit_code == 0, first.output
    resolved = yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())
    assert resolved["run"]["seed"] == 4 and resolved["data"]["crop_size"] == [32, 48] and resolved["data"]["train"] == [
        str(tiny_data / "train.h5")]
    again = invoke("adapt", "--config", tmp_path / "one" / "config.yaml", "--out", tmp_path / "two")
    assert again.exit_code == 0, again.output
    a = load_checkpoint(tmp_path / "one" / "last.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "two" / "last.ckpt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_command_line_flags_win_over_the_file(tiny_data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": [str(tiny_data / "train.h5")], "steps": 5, "crop-size": [32, 48],
                                      "batch_size": 1, "workers": 0, "iters": 1, "val-every": 0, "quiet": True}))
    result = invoke("adapt", "--config", config, "--steps", "1", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps_done"] == 1
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["run"]["steps"] == 1


def test_unknown_config_key_is_a_one_line_error_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 3\nlearning_rate: 0.1\n")
    result = invoke("adapt", "--config", config, "--train", "x.h5", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "unknown key 'learning_rate'" in result.output


def test_config_works_on_other_commands_too(tiny_data, tmp_path):
    config = tmp_path / "inspect.yaml"
    config.write_text("bins: 4\nquick: true\n")
    result = invoke("inspect", tiny_data / "val.h5", "--config", config, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["disparity"]["histogram"]["counts"]) == 4


def test_tensorboard_writes_event_files(tiny_data, tmp_path):
    result = invoke("adapt", "--train", tiny_data / "train.h5", "--val", tiny_data / "val.h5", "--out", tmp_path,
                    "--tensorboard", *FAST)
    assert result.exit_code == 0, result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "train/loss" in events.Tags()["scalars"] and "val_final/all_epe" in events.Tags()["scalars"]
    assert events.Tags()["images"] == ["val/left_gt_pred_error_correction"]


def test_tensorboard_missing_is_a_one_line_error(tiny_data, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = invoke("adapt", "--train", tiny_data / "train.h5", "--out", tmp_path, "--tensorboard", *FAST)
    assert result.exit_code == 1 and "pip install 'polstereo[tensorboard]'" in result.output


def test_every_training_option_can_be_written_and_read_back():
    from polstereo.cli.common import _param_names
    from polstereo.cli.train import adapt_cmd
    from polstereo.training.trainer import TrainConfig

    names = _param_names(adapt_cmd)
    missing = [name for name in TrainConfig.flat_fields()
               if name not in names and name not in TrainConfig.INVOCATION_ONLY]
    assert missing == []
