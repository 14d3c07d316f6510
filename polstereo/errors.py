"""The one exception type for errors a user can cause.

The CLI turns a :class:`PolstereoError` into a one-line message and its exit code
(0 ok, 1 failure, 2 usage error, 3 infeasible); library callers catch it like any
other exception.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INFEASIBLE = 3


class PolstereoError(Exception):
    """An error caused by user input: a missing or corrupt file, a wrong shape, ...

    Args:
        message: one line saying what is wrong and, where useful, what to do.
        exit_code: the process exit code the CLI uses for it.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


class InfeasibleError(PolstereoError):
    """A stage start that cannot succeed (base error beyond ``max_correction``)."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_INFEASIBLE)
