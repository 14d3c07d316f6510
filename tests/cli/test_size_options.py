"""Size options: each keeps its two-number order and also takes WxH (width first) everywhere."""

import click
import pytest
from click.testing import CliRunner

from polstereo.cli.common import SizeCommand, SizeOption
from polstereo.cli.main import COMMANDS, cli


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _parsed(name: str, *args: str) -> dict:
    command = _command(name)
    return command.make_context(name, list(args)).params


@pytest.mark.parametrize("stage", ["adapt", "learn-pol", "finetune"])
def test_crop_size_wxh_is_width_then_height_and_two_numbers_stay_height_width(stage):
    required = ["--train", "x.h5", "--out", "run"]
    assert _parsed(stage, *required, "--crop-size", "160x128")["crop_size"] == (128, 160)
    assert _parsed(stage, *required, "--crop-size=160x128")["crop_size"] == (128, 160)
    assert _parsed(stage, *required, "--crop-size", "128", "160")["crop_size"] == (128, 160)


def test_inspect_crop_wxh_is_width_then_height_and_two_numbers_stay_height_width():
    assert _parsed("inspect", "f.h5", "--crop", "160x128")["crop"] == (128, 160)
    assert _parsed("inspect", "f.h5", "--crop", "128", "160")["crop"] == (128, 160)


def test_make_synthetic_size_keeps_width_height_in_both_forms():
    assert _parsed("make-synthetic", "out", "--size", "160x128")["size"] == (160, 128)
    assert _parsed("make-synthetic", "out", "--size", "160", "128")["size"] == (160, 128)


def test_every_size_option_takes_wxh():
    found = []
    for name in COMMANDS:
        command = _command(name)
        for param in command.params:
            if param.nargs == 2 and any(word in param.name for word in ("size", "crop")):
                assert isinstance(param, SizeOption) and isinstance(command, SizeCommand), (name, param.name)
                found.append((name, param.name))
    assert len(found) >= 5  # make-synthetic --size, inspect --crop, the three training --crop-size


@pytest.mark.parametrize("name, option, order", [("adapt", "--crop-size", "height width"),
                                                 ("inspect", "--crop", "height width"),
                                                 ("make-synthetic", "--size", "width height")])
def test_help_states_the_order_of_each_size_option(name, option, order):
    text = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
    metavar = "H W" if order == "height width" else "W H"
    assert f"{option} {metavar}|WxH" in text and f"order {order}, or one WxH token (width first" in text


def test_a_size_that_is_neither_form_is_a_usage_error():
    result = CliRunner().invoke(cli, ["inspect", "f.h5", "--crop", "160by128"])
    assert result.exit_code == 2 and "--crop" in result.output


def test_config_file_takes_wxh_for_a_size(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("crop-size: 160x128\n")
    params = _parsed("adapt", "--config", str(config), "--train", "x.h5", "--out", "run")
    assert params["crop_size"] == (128, 160)
    config.write_text("crop-size: big\n")
    result = CliRunner().invoke(cli, ["adapt", "--config", str(config), "--train", "x.h5", "--out", "run"])
    assert result.exit_code == 2 and "'crop-size' expects two integers (H W) or WxH" in result.output
