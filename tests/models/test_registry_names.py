"""Model names: one parser (``base_spec``) for every place a name is accepted, S2M2 an entry like the sizes."""

import click
import pytest

from polstereo.errors import PolstereoError
from polstereo.models.base.network import MODEL_CONFIGS
from polstereo.models.base.s2m2 import S2M2_SIZES
from polstereo.models.files import read_payload
from polstereo.models.registry import BASE_KINDS, MODEL_NAMES, base_name, base_spec, build_model
from tests.models.test_s2m2 import StandIn


def test_every_builtin_size_and_s2m2_size_is_a_name():
    assert set(MODEL_NAMES) == {*MODEL_CONFIGS, "s2m2", *(f"s2m2-{size}" for size in S2M2_SIZES)}
    assert all(spec["kind"] in BASE_KINDS for spec in MODEL_NAMES.values())


def test_plain_s2m2_means_the_default_size_s():
    assert base_spec("s2m2") == base_spec("s2m2-S") == {"kind": "s2m2", "size": "S", "input_encoding": "srgb"}
    assert build_model({"base": "s2m2"}, s2m2_factory=StandIn).base.size == "S"


@pytest.mark.parametrize("name, size", [("s2m2-XL", "XL"), ("S2M2-l", "L"), ("s2m2:m", "M"), ("s2m2xl", "XL")])
def test_s2m2_names_ignore_case_and_separator(name, size):
    assert base_spec(name)["size"] == size


def test_builtin_names_give_builtin_specs():
    assert base_spec("small") == {"kind": "builtin", "name": "small"}
    assert build_model({"base": "small"}).base.config == MODEL_CONFIGS["small"]


def test_base_name_inverts_base_spec_for_every_name():
    for name in MODEL_NAMES:
        assert base_spec(base_name(base_spec(name))) == base_spec(name)
    assert base_name("s2m2") == "s2m2-S"
    assert base_name({"kind": "builtin", "name": None, "config": {}}) == "custom"


def test_base_spec_returns_a_copy():
    base_spec("s2m2")["size"] = "XL"
    assert base_spec("s2m2")["size"] == "S"


@pytest.mark.parametrize("name, message", [("huge", "unknown base model size 'huge'"),
                                           ("s2m2-XXL", "unknown S2M2 size 's2m2-XXL'")])
def test_unknown_names_are_one_line_errors_listing_the_names(name, message):
    with pytest.raises(PolstereoError, match=message) as err:
        base_spec(name)
    assert "s2m2-XL" in str(err.value) and "tiny" in str(err.value) and "\n" not in str(err.value)


def test_unknown_s2m2_spec_option_is_refused():
    with pytest.raises(PolstereoError, match="unknown s2m2 base option"):
        build_model({"base": {"kind": "s2m2", "size": "S", "gamma": 2.2}}, s2m2_factory=StandIn)


@pytest.mark.parametrize("stage", ["adapt", "learn-pol", "finetune"])
def test_training_commands_take_the_plain_s2m2_as_s2m2_s(stage):
    from polstereo.cli.main import cli

    command = cli.get_command(click.Context(cli), stage)
    params = command.make_context(stage, ["--train", "x.h5", "--out", "run", "--model", "s2m2"]).params
    assert params["model"] == "s2m2-S"
    with pytest.raises(click.BadParameter, match="unknown base model size 'huge'"):
        command.make_context(stage, ["--train", "x.h5", "--out", "run", "--model", "huge"])


def test_released_s2m2_weights_given_as_a_model_file_get_a_hint(tmp_path):
    import torch

    path = tmp_path / "CH192NTR2.pth"
    torch.save({"state_dict": StandIn(192, 1, 2).state_dict()}, path)
    with pytest.raises(PolstereoError, match="looks like official S2M2 weights.*--model s2m2-M"):
        read_payload(path)
