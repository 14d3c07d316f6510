"""Every command option that sets a library config field has the field's default, so the two cannot drift.

The click options of ``adapt``/``learn-pol``/``finetune``, ``infer``, ``export`` and ``eval``
are written by hand beside TrainConfig, InferConfig, ExportConfig and EvalConfig; this
test is what keeps each default in one place in effect (issue 18). TrainConfig's fields,
in sections, are matched by flat name (the option's long name).
"""

import click
import pytest

from polstereo.cli.common import config_defaults, config_fields
from polstereo.cli.main import cli
from polstereo.evaluation.evaluate import EvalConfig
from polstereo.export.onnx import ExportConfig
from polstereo.inference.pipeline import InferConfig
from polstereo.training.config import TrainConfig

# options that are the command's own (output, config files) or carry a field under another name
CLI_ONLY = {"config", "json_out", "quiet"}
RENAMED = {"angles": "angles_deg"}
COMMANDS = [("adapt", TrainConfig), ("learn-pol", TrainConfig), ("finetune", TrainConfig),
            ("infer", InferConfig), ("export", ExportConfig), ("eval", EvalConfig)]


def _unset(value) -> bool:
    """No default: None, an empty repeatable option, or click's own UNSET marker (click >= 8.2)."""
    return value is None or value in ((), []) or repr(value) == "Sentinel.UNSET"


def _options(command: str):
    cmd = cli.get_command(click.Context(cli), command)
    return cmd, [p for p in cmd.params if isinstance(p, click.Option)]


@pytest.mark.parametrize("command,config", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_option_default_is_its_config_fields(command, config):
    cmd, options = _options(command)
    fields = set(config_fields(config))
    defaults = config_defaults(config)
    drift, orphans = [], []
    for option in options:
        if option.name in CLI_ONLY:
            continue
        name = RENAMED.get(option.name, option.name)
        if name not in fields:
            orphans.append(option.name)
            continue
        if name not in defaults:  # a required field: the option has no default either
            continue
        expected = defaults[name]
        ctx = click.Context(cmd)
        got = option.get_default(ctx, call=True)
        if not _unset(got):  # as the command receives it: converted, and through the option's callback
            got = option.process_value(ctx, got)
        if isinstance(got, tuple) and isinstance(expected, (list, tuple)):
            got, expected = list(got), list(expected)
        if not (got == expected or (_unset(got) and _unset(expected))):
            drift.append(f"--{option.name.replace('_', '-')}: option {got!r}, {config.__name__} {expected!r}")
    assert orphans == [], f"options of {command} with no {config.__name__} field: {orphans}"
    assert drift == []


def test_the_check_sees_a_drifted_default(monkeypatch):
    cmd, options = _options("adapt")
    steps = next(o for o in options if o.name == "steps")
    monkeypatch.setattr(steps, "default", 12345)
    with pytest.raises(AssertionError, match="--steps: option 12345"):
        test_every_option_default_is_its_config_fields("adapt", TrainConfig)
