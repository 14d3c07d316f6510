"""Options and output helpers shared by every command family."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from polstereo.io.atomic import atomic_path


def json_option(func):
    """``--json`` prints machine-readable results to stdout; ``--json FILE`` writes them to FILE."""
    return click.option(
        "--json", "json_out", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
        help="Machine-readable results: to stdout, or to FILE when given.")(func)


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")(func)


def emit_json(data: Any, target: str | None) -> None:
    """Write ``data`` as JSON to stdout (``-``) or atomically to a file."""
    if target is None:
        return
    text = json.dumps(data, indent=2, sort_keys=False, default=_jsonable)
    if target == "-":
        click.echo(text)
        return
    with atomic_path(Path(target)) as tmp:
        tmp.write_text(text + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def show_progress(quiet: bool) -> bool:
    """Progress bars only for people: off with --quiet or when stderr is not a terminal."""
    return not quiet and sys.stderr.isatty()


# ------------------------------------------------------------------------------ --config FILE.yaml
def _param_names(command: click.Command) -> dict[str, str]:
    """Every spelling a config key may use for a parameter -> the parameter's name.

    ``dataset-steps``, ``dataset_steps`` and, for ``--train`` (param ``train_files``), ``train``.
    """
    names: dict[str, str] = {}
    for param in command.params:
        if param.name in (None, "config", "help"):
            continue
        spellings = {param.name}
        for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
            if opt.startswith("--"):
                spellings.add(opt[2:])
        for spelling in spellings:
            names[spelling.replace("-", "_")] = param.name
    return names


def read_config_file(path: Path, command: click.Command) -> dict[str, Any]:
    """Option values from a YAML file, keyed by parameter name; unknown keys are errors."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise click.BadParameter(f"no such file: {path}", param_hint="'--config'") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise click.BadParameter(f"{path} is not valid YAML{where}", param_hint="'--config'") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of option: value", param_hint="'--config'")
    names = _param_names(command)
    values = {}
    for key, value in data.items():
        name = names.get(str(key).replace("-", "_"))
        if name is None:
            raise click.BadParameter(f"unknown key {key!r} in {path} (not an option of "
                                     f"'polstereo {command.name}')", param_hint="'--config'")
        values[name] = value
    return values


def _apply_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    # defaults from the file; anything given on the command line still wins
    ctx.default_map = {**(ctx.default_map or {}), **read_config_file(Path(value), ctx.command)}


def with_config_option(command: click.Command) -> click.Command:
    """Give ``command`` a ``--config FILE.yaml`` option (idempotent)."""
    if any(p.name == "config" for p in command.params):
        return command
    command.params.insert(0, click.Option(
        ["--config"], type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_apply_config,
        help="YAML file of option values (keys as the long option names); command-line flags win."))
    return command
