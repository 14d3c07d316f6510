"""Entry point: a click group whose subcommands are imported only when used.

Lazy loading keeps ``polstereo --help`` fast (no torch import) and lets each command
family live in its own module. Errors a user can cause (:class:`PolstereoError`)
become a one-line message and the error's exit code, never a traceback.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from polstereo import __version__
from polstereo.cli.common import with_config_option
from polstereo.errors import EXIT_FAILURE, PolstereoError

# command name -> "module:attribute"; a new command is a new row.
COMMANDS: dict[str, str] = {
    "inspect": "polstereo.cli.data:inspect_cmd",
    "convert-dataset": "polstereo.cli.convert:convert_dataset_cmd",
    "make-synthetic": "polstereo.cli.synthetic:make_synthetic_cmd",
    "adapt": "polstereo.cli.train:adapt_cmd",
    "learn-pol": "polstereo.cli.train:learn_pol_cmd",
    "finetune": "polstereo.cli.train:finetune_cmd",
    "check-feasibility": "polstereo.cli.evaluate:check_feasibility_cmd",
    "eval": "polstereo.cli.evaluate:eval_cmd",
    "infer": "polstereo.cli.infer:infer_cmd",
    "export": "polstereo.cli.export:export_cmd",
}


class _UserError(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return with_config_option(getattr(importlib.import_module(module_name), attr))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PolstereoError as err:
            raise _UserError(_one_line(str(err)), err.exit_code) from None
        except KeyboardInterrupt:
            raise _UserError("interrupted; no partial output was left under a final name", 130) from None
        except OSError as err:
            # a missing file, a full or read-only disk, an --out that is a file: the environment, not a bug
            raise _UserError(os_error_line(err), EXIT_FAILURE) from None


def _one_line(message: str) -> str:
    return " ".join(message.split())


# errno -> what to say; strerror alone ("File exists") does not tell a user what to change
_OS_ERROR_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EEXIST: "exists and is not a directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}


def os_error_line(err: OSError) -> str:
    """One line for an OSError a user's environment caused, naming the path where known."""
    reason = _OS_ERROR_HINTS.get(err.errno) or err.strerror or str(err) or type(err).__name__
    path = err.filename
    if path is not None and err.filename2 is not None:
        path = f"{err.filename} -> {err.filename2}"
    return _one_line(f"{path}: {reason}" if path is not None else reason)[:300]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="polstereo")
def cli() -> None:
    """Polarization-aware stereo matching of transparent objects.

    Convert and generate polarized stereo datasets (HDF5), train a base stereo
    network plus a polarization correction module in three stages
    (adapt -> learn-pol -> finetune), evaluate, and run on captured pairs.
    """


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="polstereo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
