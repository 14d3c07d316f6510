"""Atomic file output: write under a temporary name, rename only when complete.

An interrupted write (exception, Ctrl-C) never leaves a file under the final name, and
an existing file under that name stays intact until the new one replaces it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it there on success.

    The temporary file lives in the same directory so the rename is atomic on POSIX.
    ``suffix`` defaults to the final file's suffix (some writers pick the format by it).
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # The real suffix stays last: writers such as cv2.imwrite pick the format by it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.partial-",
                                    suffix=final.suffix if suffix is None else suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
