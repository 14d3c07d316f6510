"""Atomic file output: write under a temporary name, rename only when complete.

An interrupted write (exception, Ctrl-C) never leaves a file under the final name, and
an existing file under that name stays intact until the new one replaces it.
:func:`atomic_file_set` does the same for a set of files that belong together (the
train/val/test splits of a dataset).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import tempfile
from pathlib import Path
from typing import Iterator

from polstereo.errors import PolstereoError


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, deepest first (what a mkdir -p would create)."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


@contextlib.contextmanager
def removed_if_left_empty(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield ``directory``; if the block fails and leaves it empty, remove it again.

    Only folders the block created go (``directory`` and any missing parents, while empty):
    a run that fails at its start leaves no empty run folder behind, and a folder that
    existed before, or holds anything, is never touched.
    """
    directory = Path(directory)
    created = _missing_dirs(directory)
    try:
        yield directory
    except BaseException:
        remove_empty_dirs(created)
        raise


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove the folders ``created`` (deepest first, as :func:`_missing_dirs` lists them) while
    they are empty; the first one that holds anything stops it, with its parents."""
    for path in created:
        try:
            path.rmdir()  # refuses a folder that is not empty, which stays
        except OSError:
            break


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it there on success.

    The temporary file lives in the same directory so the rename is atomic on POSIX.
    ``suffix`` defaults to the final file's suffix (some writers pick the format by it).
    """
    final = Path(final_path)
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(final))
    with removed_if_left_empty(final.parent):
        with _atomic_path(final, suffix) as tmp:
            yield tmp


@contextlib.contextmanager
def _atomic_path(final: Path, suffix: str | None) -> Iterator[Path]:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # The real suffix stays last: writers such as cv2.imwrite pick the format by it.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.partial-",
                                        suffix=final.suffix if suffix is None else suffix, dir=final.parent)
    except OSError as err:
        raise _naming(err, final) from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # also what keeps a full disk from staying full
        if isinstance(err, OSError):
            raise _naming(err, final) from None
        raise


def _naming(err: OSError, final: Path) -> OSError:
    """The same OSError naming ``final`` where it named nothing or the temporary file (users know ``final``)."""
    named = None if err.filename is None else Path(str(err.filename))
    if err.errno is None or (named is not None and not named.name.startswith(f".{final.stem}.partial-")):
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(final))


@contextlib.contextmanager
def atomic_file_set(directory: str | os.PathLike, names: tuple[str, ...] | list[str],
                    staging_name: str | None = None) -> Iterator[Path]:
    """Yield a staging directory; on success the files named ``names`` in ``directory`` become
    exactly the ones written there, as a whole.

    Files are written into a hidden ``.partial-*`` directory inside ``directory`` (same file
    system, so every move is a rename). On success each staged file replaces its namesake
    and a name in ``names`` that was not staged is removed (a stale split of an earlier
    run); Ctrl-C is held back during those few renames, so an interruption leaves either
    the old set or the new one, never a mix. On failure the staging directory goes and the
    old set stays untouched. (A power cut during the renames can still mix them.)

    ``staging_name`` (a plain name starting with ``.partial-``) names a fixed staging
    directory instead: it is reused if it exists and kept on failure, so that a caller can
    pick up the files an interrupted run finished (``make-synthetic --resume``). It still
    goes on success.
    """
    directory = Path(directory)
    if staging_name is not None and (not staging_name.startswith(".partial-") or os.sep in staging_name):
        raise ValueError(f"staging_name must be a plain name starting with '.partial-', got {staging_name!r}")
    with removed_if_left_empty(directory):
        with _staged_file_set(directory, names, staging_name) as staging:
            yield staging


@contextlib.contextmanager
def _staged_file_set(directory: Path, names: tuple[str, ...] | list[str],
                     staging_name: str | None = None) -> Iterator[Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if staging_name is None:
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
        else:
            staging = directory / staging_name
            staging.mkdir(exist_ok=True)
    except OSError as err:
        raise _naming(err, directory / names[0]) from None
    committed = False
    try:
        try:
            yield staging
        except PolstereoError as err:
            if str(staging) not in str(err):
                raise
            # users know the final names, not the staging directory
            message = str(err).replace(f"{staging}{os.sep}", f"{directory}{os.sep}")
            raise PolstereoError(message, err.exit_code) from None
        except OSError as err:
            if err.filename is None or str(staging) not in str(err.filename):
                raise
            raise OSError(err.errno, err.strerror, str(err.filename).replace(str(staging), str(directory))) from None
        with _sigint_held():
            for name in names:
                if (staging / name).exists():
                    os.replace(staging / name, directory / name)
                elif (directory / name).exists():
                    (directory / name).unlink()
        committed = True
    finally:
        if committed or staging_name is None:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back until the block is done, then raise it (main thread only; elsewhere a no-op).

    A Python-level handler that only takes note, not a blocked signal mask: in a process
    with other threads (torch's, BLAS's) the kernel would hand a blocked SIGINT to one of them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
