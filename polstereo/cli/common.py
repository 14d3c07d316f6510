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
