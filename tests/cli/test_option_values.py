"""Option and config-file values: usage errors naming the option, never a silent coercion or a traceback."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.data.h5 import write_samples
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.models.registry import build_model
from polstereo.training.checkpoint import save_checkpoint
from polstereo.training.trainer import TrainConfig, train
from tests.training.conftest import shifted_sample, tiny_data  # noqa: F401  (fixture)

FAST = ["--steps", "1", "--batch-size", "1", "--crop-size", "32", "48", "--workers", "0", "--iters", "1",
        "--val-every", "0", "--save-every", "0", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def stage_a_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("a") / "a.ckpt"
    return save_checkpoint(path, build_model({"base": "tiny"}), stage="A", lineage=[{"stage": "A"}])


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-2"])
@pytest.mark.parametrize("command", ["adapt", "learn-pol", "finetune", "check-feasibility"])
def test_max_correction_must_be_positive_and_finite_everywhere(command, value, tiny_data, stage_a_ckpt, tmp_path):
    if command == "check-feasibility":
        args = [command, stage_a_ckpt, "--data", tiny_data / "val.h5"]
    else:
        args = [command, "--init", stage_a_ckpt, "--train", tiny_data / "train.h5", "--out", tmp_path / "r", *FAST]
    result = invoke(*args, "--max-correction", value)
    assert result.exit_code == 2, result.output
    assert "--max-correction" in result.output and "positive, finite number of pixels" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0])
def test_train_config_refuses_a_meaningless_max_correction(tiny_data, tmp_path, value):
    # the model checks its bound when the run sets it, before anything is written
    with pytest.raises(PolstereoError, match="--max-correction must be a positive number") as err:
        train(TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[tiny_data / "train.h5"],
                                    crop_size=(32, 48), max_correction=value), log=lambda msg: None)
    assert err.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry, message", [
    ({"steps": 2.7}, "key 'steps' expects an integer, got 2.7"),
    ({"seed": 1.9}, "key 'seed' expects an integer, got 1.9"),
    ({"lr": True}, "key 'lr' expects a number, got True"),
    ({"steps": [1, 2]}, "key 'steps' expects one integer, got [1, 2]"),
    ({"crop-size": [32]}, "key 'crop-size' expects 2 values, got 1"),
    ({"crop-size": 32}, "key 'crop-size' expects a list of 2 integers"),
    ({"quiet": 1}, "key 'quiet' expects a boolean, got 1"),
    ({"model": ["tiny"]}, "key 'model' expects one text value"),
])
def test_config_values_of_the_wrong_type_are_usage_errors_naming_the_key(entry, message, tiny_data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": [str(tiny_data / "train.h5")], **entry}))
    result = invoke("adapt", "--config", config, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_config_takes_a_single_train_file_and_text_numbers(tiny_data, tmp_path):
    config = tmp_path / "c.yaml"
    # PyYAML reads 1e-4 as text; click parses it as the number it is
    config.write_text(f"train: {tiny_data / 'train.h5'}\nlr: 1e-4\nsteps: 1\n")
    result = invoke("adapt", "--config", config, "--out", tmp_path / "run", *FAST[2:], "--json")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["data"]["train"] == [str(tiny_data / "train.h5")] and resolved["optim"]["lr"] == 1e-4


def test_crop_larger_than_the_images_is_a_usage_error(tiny_data, tmp_path):
    result = invoke("adapt", "--train", tiny_data / "train.h5", "--out", tmp_path / "run", *FAST[:4],
                    "--crop-size", 48, 64, *FAST[7:])
    assert result.exit_code == 2, result.output
    assert ("--crop-size 48 64 (height width) is larger than the smallest images of "
            f"{tiny_data / 'train.h5'} (40 56)") in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_crop_that_fits_only_when_upscaled_names_the_scale(tiny_data, tmp_path):
    with pytest.raises(PolstereoError, match="at the smallest --scale-range 0.5; .* Use --crop-size 20 28"):
        train(TrainConfig.from_flat(stage="A", out=tmp_path, train=[tiny_data / "train.h5"], crop_size=(32, 48),
                                    scale_range=(0.5, 1.0), workers=0), log=lambda msg: None)


def test_nan_in_training_images_is_a_data_error_naming_the_sample(tmp_path):
    rng = np.random.default_rng(3)
    samples = [shifted_sample(rng) for _ in range(2)]
    samples[1].left[0, 0, 5, 5] = np.nan
    bad = tmp_path / "bad.h5"
    from polstereo.data.h5 import writer

    # the writer refuses NaN images; a hand-made file can hold them
    real_check = writer._check_sample
    writer._check_sample = lambda *args: None
    try:
        write_samples(bad, samples)
    finally:
        writer._check_sample = real_check
    result = invoke("adapt", "--train", bad, "--out", tmp_path / "run", *FAST[:2], "--batch-size", 2, *FAST[4:])
    assert result.exit_code == 1, result.output
    assert f"{bad}: sample 1" in result.output and "the data is broken, not the model" in result.output
    assert not (tmp_path / "run" / "config.yaml").exists()  # a run that fails at its start leaves no config


def test_metrics_jsonl_holds_null_not_nan(tiny_data, tmp_path):
    from polstereo.training.step import stage_loss

    train(TrainConfig.from_flat(stage="A", out=tmp_path, train=[tiny_data / "train.h5"], steps=2, batch_size=1,
                                crop_size=(32, 48), workers=0, iters=1, val_every=0, save_every=0, log_every=1,
                                quiet=True), log=lambda msg: None, loss=lambda *args: stage_loss(*args) * float("nan"))

    def no_constants(name):
        raise AssertionError(f"{name} in metrics.jsonl")
    records = [json.loads(line, parse_constant=no_constants)
               for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in records if r["type"] == "train"] == [None, None]
