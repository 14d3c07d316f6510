"""One writer per output: an advisory lock on the folder or file a command writes.

Every command that writes an output (the training stages, make-synthetic, convert-dataset,
infer, export) holds :func:`output_lock` on it for as long as it runs, taken *before* it
looks at what is already there. A second writer of the same output gets a one-line error
naming the holder's pid and touches nothing. Readers (eval, inspect) take no lock.

The lock is ``flock`` on a small file beside the output, ``.NAME.polstereo-lock`` in the
output's parent folder (beside, not inside: a set that is replaced as a whole, or a run
folder that must stay empty until the run writes, is not disturbed by it). The kernel drops
an ``flock`` when its holder exits in any way, ``kill -9`` included, so a lock file left
behind by a killed process never blocks: the next writer simply takes it. A clean exit
removes the file. Local file systems only: on NFS ``flock`` may not exclude another host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from polstereo.errors import PolstereoError
from polstereo.io.atomic import _missing_dirs, remove_empty_dirs

LOCK_SUFFIX = ".polstereo-lock"


def lock_path(output: str | os.PathLike) -> Path:
    """Where the lock of ``output`` (a folder or a file) lives: ``PARENT/.NAME.polstereo-lock``."""
    output = Path(os.path.abspath(output))
    return output.parent / f".{output.name}{LOCK_SUFFIX}"


def _holder(fd: int) -> str:
    """The holder's record written into the lock file (``pid N ...``), or a plain 'pid unknown'."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "pid unknown"


def _acquire(path: Path, output: Path, what: str) -> int:
    """An open descriptor of ``path`` holding its exclusive flock; PolstereoError if another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise PolstereoError(f"{output}: another polstereo process ({holder}) is writing this {what}; "
                                 f"wait for it to finish or choose another output") from None
        except OSError as err:
            os.close(fd)
            raise PolstereoError(f"{output}: cannot lock {path.name}: {err.strerror or err}") from None
        # a holder that finished between our open and flock unlinked the file we hold:
        # locking a file nobody else can open would exclude nobody, so take the new one
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Hold the write lock of ``output`` for the block; yields the lock file's path.

    Raises PolstereoError (exit code 1) when another process holds it, naming that
    process. Folders created only to hold the lock file are removed again when the block
    leaves them empty. ``what`` names the output in the message ("run folder", "data set").
    """
    output = Path(output)
    path = lock_path(output)
    created = _missing_dirs(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PolstereoError(f"{output}: cannot create {path.parent}: {err.strerror or err}") from None
    try:
        fd = _acquire(path, output, what)
    except BaseException:
        remove_empty_dirs(created)
        raise
    try:
        record = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: " \
                 f"{' '.join(sys.argv[:3])}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
    except OSError:
        pass  # the lock holds without the record; a second writer then reads 'pid unknown'
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiting opener then retries on a new file
        os.close(fd)
        remove_empty_dirs(created)

