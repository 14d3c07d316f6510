"""Options and output helpers shared by every command family."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path


def config_fields(config_class) -> dict[str, dataclasses.Field]:
    """The option fields of a library config dataclass by the name its option sets: its own
    fields, or a sectioned config's ``flat_fields()`` (TrainConfig: every section's, by flat name)."""
    flat = getattr(config_class, "flat_fields", None)
    return flat() if flat is not None else {f.name: f for f in dataclasses.fields(config_class)}


def config_defaults(config_class) -> dict[str, Any]:
    """``{field: default}`` of a library config dataclass (fields without one left out; a sectioned
    config's by flat name): the one place a command option's default is written
    (tests/cli/test_option_defaults.py)."""
    out = {}
    for name, f in config_fields(config_class).items():
        if f.default is not dataclasses.MISSING:
            out[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[name] = f.default_factory()
    return out


def json_option(func):
    """``--json`` prints machine-readable results to stdout; ``--json FILE`` writes them to FILE."""
    return click.option(
        "--json", "json_out", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
        help="Machine-readable results: to stdout, or to FILE when given.")(func)


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")(func)


def positive_pixels(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback: a finite number of pixels > 0 (``inf`` and ``nan`` parse as floats, but mean nothing here)."""
    from polstereo.models.full import check_bound

    try:
        return None if value is None else check_bound(value)
    except PolstereoError:
        raise click.BadParameter(f"{value} is not a positive, finite number of pixels") from None


# ------------------------------------------------------------------------------ sizes: W H, H W or WxH
_WXH = re.compile(r"^(\d+)[xX,](\d+)$")


class SizeOption(click.Option):
    """A two-number size option (``nargs=2``) that also takes one ``WxH`` token, width first.

    ``size_order`` ("WH" or "HW") is the order of the two-number form and of the value the
    command receives; ``WxH`` always means width x height, as in ``make-synthetic --size``.
    Only commands of class :class:`SizeCommand` expand the one-token form.
    """

    def __init__(self, *args: Any, size_order: str = "WH", **kwargs: Any):
        if size_order not in ("WH", "HW"):
            raise ValueError(f"size_order must be 'WH' or 'HW', got {size_order!r}")
        self.size_order = size_order
        super().__init__(*args, nargs=2, **kwargs)

    def from_wxh(self, text: str) -> list[str] | None:
        """``"160x128"`` -> the two numbers in this option's order, or None when ``text`` is not WxH."""
        match = _WXH.match(text.strip())
        if match is None:
            return None
        width, height = match.groups()
        return [width, height] if self.size_order == "WH" else [height, width]


def size_option(*param_decls: str, order: str, minimum: int, default: tuple[int, int], help: str):
    """A :class:`SizeOption`: two numbers in ``order`` ("WH" or "HW") or ``WxH``; the help states both."""
    two = "width height" if order == "WH" else "height width"
    return click.option(*param_decls, cls=SizeOption, size_order=order, type=click.IntRange(minimum),
                        default=default, show_default=True, metavar=f"{' '.join(order)}|WxH",
                        help=f"{help} Two numbers in the order {two}, or one WxH token (width first, "
                             f"e.g. 320x256).")


class SizeCommand(click.Command):
    """A command whose :class:`SizeOption` options also take ``WxH`` (one token, split before parsing)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        sizes = {opt: param for param in self.params if isinstance(param, SizeOption) for opt in param.opts}
        expanded: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                expanded += args[i:]
                break
            name, eq, value = arg.partition("=")
            param = sizes.get(name)
            if param is not None and eq:
                numbers = param.from_wxh(value)
                expanded += [name, *numbers] if numbers else [arg]
            elif param is not None and i + 1 < len(args) and param.from_wxh(args[i + 1]):
                expanded += [arg, *param.from_wxh(args[i + 1])]
                i += 1
            else:
                expanded.append(arg)
            i += 1
        return super().parse_args(ctx, expanded)


class SectionedCommand(SizeCommand):
    """A command whose options belong to sections of its library config: ``--help`` lists them
    under one heading per section, and a ``--config`` file may nest their values by section.

    ``sections``: ``{key: heading}`` in help order; ``paths``: ``{parameter name: path}``, the
    path (section key first) of the config field the parameter sets, e.g. ``("model",
    "correction", "search_radius")``. Parameters without a path go under "Other options".
    """

    def __init__(self, *args: Any, sections: dict[str, str], paths: dict[str, tuple[str, ...]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sections, self.paths = sections, paths

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str | None, list] = {key: [] for key in self.sections}
        groups[None] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                key = self.paths.get(param.name, (None,))[0]
                groups[key if key in groups else None].append(record)
        for key, heading in [*self.sections.items(), (None, "Other options")]:
            if groups[key]:
                with formatter.section(heading):
                    formatter.write_dl(groups[key])

    def config_entries(self, data: dict, path: Path) -> list[tuple[str, str, Any]]:
        """``(key as written, parameter name or None, value)`` of a config file's mapping, its
        sections (``model: {max_correction: 6}``) walked; a top-level key is left to the
        option spellings (None), a key inside a section must be one of its fields or a flat
        name of that section (``model: {correction-search: 4}``)."""
        by_path = {p: name for name, p in self.paths.items()}
        groups = {p[:i] for p in self.paths.values() for i in range(1, len(p))}
        entries: list[tuple[str, str, Any]] = []

        def walk(values: dict, prefix: tuple[str, ...]) -> None:
            for key, value in values.items():
                where = prefix + (str(key).replace("-", "_"),)
                shown = ".".join(map(str, prefix + (key,)))
                if isinstance(value, dict) and where in groups:
                    walk(value, where)
                elif not prefix:
                    entries.append((str(key), None, value))
                else:
                    name = by_path.get(where)
                    if name is None and self.paths.get(where[-1], ())[:len(prefix)] == prefix:
                        name = where[-1]
                    if name is None:
                        raise click.BadParameter(f"unknown key {shown!r} in {path} (not an option of "
                                                 f"'polstereo {self.name}')", param_hint="'--config'")
                    entries.append((shown, name, value))

        walk(data, ())
        return entries


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

    ``dataset-steps`` and ``dataset_steps``; the long option names and the parameter name.
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
    params = {param.name: param for param in command.params}
    entries = (command.config_entries(data, path) if isinstance(command, SectionedCommand)
               else [(str(key), None, value) for key, value in data.items()])
    values, given_as = {}, {}
    for key, name, value in entries:
        name = name or names.get(key.replace("-", "_"))
        if name is None:
            raise click.BadParameter(f"unknown key {key!r} in {path} (not an option of "
                                     f"'polstereo {command.name}')", param_hint="'--config'")
        if name in values:
            raise click.BadParameter(f"{path}: keys {given_as[name]!r} and {key!r} set the same option",
                                     param_hint="'--config'")
        values[name], given_as[name] = _config_value(params[name], key, value, path), key
    return values


def _config_value(param: click.Parameter, key: Any, value: Any, path: Path) -> Any:
    """``value`` checked against what ``param`` takes, so that click never coerces it silently.

    click would turn ``steps: 2.7`` into 2, ``lr: true`` into 1.0 and ``steps: [1, 2]`` into a
    traceback; here they are usage errors naming the key. Text is left to click's own strict
    parsing (PyYAML reads ``1e-4`` as text). A list option may be given one value
    (``train: x.h5``); null means the option's default.
    """
    if value is None:
        return None
    if isinstance(param, SizeOption) and isinstance(value, str):
        numbers = param.from_wxh(value)
        if numbers is None:
            raise _bad_config(path, key, f"expects two integers ({' '.join(param.size_order)}) or WxH, "
                                         f"got {value!r}")
        return numbers
    many = getattr(param, "multiple", False) or param.nargs != 1
    if many:
        if getattr(param, "multiple", False) and param.nargs == 1 and not isinstance(value, (list, tuple)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise _bad_config(path, key, f"expects a list of {param.nargs if param.nargs > 1 else 'one or more'} "
                                         f"{_kind(param.type)}s, got {value!r}")
        if param.nargs > 1 and not getattr(param, "multiple", False) and len(value) != param.nargs:
            raise _bad_config(path, key, f"expects {param.nargs} values, got {len(value)}: {value!r}")
        for item in value:
            _check_scalar(param, key, item, path)
        return list(value)
    _check_scalar(param, key, value, path)
    return value


def _kind(param_type: click.ParamType) -> str:
    if isinstance(param_type, click.types.BoolParamType):
        return "boolean"
    if isinstance(param_type, click.types.IntParamType):
        return "integer"
    if isinstance(param_type, click.types.FloatParamType):
        return "number"
    return "text value"


def _check_scalar(param: click.Parameter, key: Any, value: Any, path: Path) -> None:
    kind = _kind(param.type)
    if isinstance(value, (list, tuple, dict)):
        raise _bad_config(path, key, f"expects one {kind}, got {value!r}")
    ok = {"boolean": isinstance(value, bool),
          "integer": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)),
          "number": isinstance(value, (str, int, float)) and not isinstance(value, bool),
          "text value": isinstance(value, (str, int, float)) and not isinstance(value, bool)}[kind]
    if not ok:
        raise _bad_config(path, key, f"expects {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {value!r}")


def _bad_config(path: Path, key: Any, problem: str) -> click.BadParameter:
    return click.BadParameter(f"{path}: key {key!r} {problem}", param_hint="'--config'")


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
        help="YAML file of option values (keys as the long option names; the training commands' also "
             "nested by section, as their config.yaml); command-line flags win."))
    return command
