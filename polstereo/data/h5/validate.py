"""Checking a polstereo HDF5 file against the schema: :func:`validate` lists every
violation, :func:`validate_isolated` survives files that crash libhdf5,
:func:`require_valid` raises on the first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from polstereo.data.h5.reader import (CORRUPT_FILE_ERRORS, _attr_int, _attr_positive, _attr_text_value,
                                      _file_attrs_and_problems, _open, _reason)
from polstereo.data.h5.schema import (COLOR_CHANNELS, IMAGE_DTYPES, MASK_NAMES, SAMPLE_ATTRS_FLOAT,
                                      SAMPLE_ATTRS_TEXT, SAMPLES_GROUP, sample_key)
from polstereo.errors import PolstereoError

def validate(path: str | os.PathLike, deep: bool = True) -> list[str]:
    """Every schema violation in ``path``, one line each; empty when the file is valid.

    A file that cannot be opened at all, or is not polstereo format, raises
    PolstereoError instead. ``deep`` also reads every dataset, which verifies the
    checksums and finds NaNs in images and negative disparities.
    """
    path = Path(path)
    f = _open(path)
    try:
        return _validate_file(f, path, deep)
    except PolstereoError:
        raise
    except CORRUPT_FILE_ERRORS as err:
        # the HDF5 structure itself is damaged (a B-tree, a header): nothing more can be listed
        raise PolstereoError(f"{path}: corrupt HDF5 structure ({_reason(err)}); the file is damaged") from None
    finally:
        f.close()


def _validate_file(f: h5py.File, path: Path, deep: bool) -> list[str]:
    attrs, problems = _file_attrs_and_problems(f, path)
    problems = [f"/: missing root attribute '{name}'" for name in ("angles_deg", "color")
                if name not in f.attrs] + problems
    angles = attrs["angles_deg"]
    channels = COLOR_CHANNELS.get(attrs["color"])
    if SAMPLES_GROUP not in f or not isinstance(f[SAMPLES_GROUP], h5py.Group):
        return problems + [f"/: missing group '/{SAMPLES_GROUP}'"]
    keys = sorted(f[SAMPLES_GROUP].keys())
    expected_keys = [sample_key(i) for i in range(len(keys))]
    if keys != expected_keys:
        problems.append(f"/{SAMPLES_GROUP}: sample groups must be named 000000, 000001, ... consecutively")
    if "num_samples" in f.attrs:
        num_samples = _attr_int(f.attrs["num_samples"])
        if num_samples is None:
            shown = " ".join(repr(f.attrs["num_samples"]).split())[:60]
            problems.append(f"/: num_samples must be an integer, got {shown}")
        elif num_samples != len(keys):
            problems.append(f"/: num_samples={num_samples} but {len(keys)} sample groups")
    num_angles = len(angles) if angles is not None else None
    for key in keys:
        where = f"/{SAMPLES_GROUP}/{key}"
        try:
            problems += _validate_sample(f[SAMPLES_GROUP][key], where, num_angles, channels, deep)
        except CORRUPT_FILE_ERRORS as err:
            problems.append(f"{where}: cannot be read ({_reason(err)})")
    return problems


def _validate_sample(g: Any, where: str, num_angles: int | None, channels: int | None, deep: bool) -> list[str]:
    if not isinstance(g, h5py.Group):
        return [f"{where}: is not a group"]
    problems = []
    for view in ("left", "right"):
        if view not in g or not isinstance(g[view], h5py.Dataset):
            problems.append(f"{where}: missing dataset '{view}'")
    if problems:
        return problems
    left, right = g["left"], g["right"]
    if left.ndim != 4 or (num_angles is not None and left.shape[0] != num_angles) \
            or (channels is not None and left.shape[1] != channels):
        problems.append(f"{where}/left: shape {left.shape}, expected ({num_angles}, {channels}, H, W)")
    elif 0 in left.shape:
        problems.append(f"{where}/left: shape {left.shape} is empty (every dimension must be at least 1)")
    if left.shape != right.shape or left.dtype != right.dtype:
        problems.append(f"{where}: left {left.shape} {left.dtype} and right {right.shape} {right.dtype} differ")
    for view, ds in (("left", left), ("right", right)):
        if ds.dtype not in IMAGE_DTYPES:
            problems.append(f"{where}/{view}: dtype {ds.dtype} is not uint8, uint16 or float32")
        white = ds.attrs.get("white_level")
        if white is not None and _attr_positive(white) is None:
            shown = " ".join(repr(white).split())[:60]
            problems.append(f"{where}/{view}: white_level {shown} must be a positive number")
    hw = left.shape[-2:]
    for name in ("disparity", *MASK_NAMES):
        if name not in g:
            continue
        ds = g[name]
        if not isinstance(ds, h5py.Dataset) or ds.shape != hw:
            problems.append(f"{where}/{name}: shape {getattr(ds, 'shape', None)}, expected {hw}")
            continue
        if name == "disparity" and ds.dtype.kind != "f":
            problems.append(f"{where}/disparity: dtype {ds.dtype}, expected float32")
        if name != "disparity" and ds.dtype not in (np.dtype(np.uint8), np.dtype(bool)):
            problems.append(f"{where}/{name}: dtype {ds.dtype}, expected uint8 0/1")
    for name in SAMPLE_ATTRS_FLOAT:
        if name in g.attrs and _attr_positive(g.attrs[name]) is None:
            shown = " ".join(repr(g.attrs[name]).split())[:60]
            problems.append(f"{where}: attribute {name}={shown} must be a positive number")
    for name in SAMPLE_ATTRS_TEXT:
        if name in g.attrs and _attr_text_value(g.attrs[name]) is None:
            shown = " ".join(repr(g.attrs[name]).split())[:60]
            problems.append(f"{where}: attribute {name}={shown} must be text")
    if deep and not problems:
        problems += _validate_values(g, where)
    return problems


def _validate_values(g: h5py.Group, where: str) -> list[str]:
    problems = []
    for name in g:
        try:
            data = g[name][()]
        except OSError as err:
            problems.append(f"{where}/{name}: cannot be read, checksum or data corrupt ({str(err).split(';')[0]})")
            continue
        except CORRUPT_FILE_ERRORS as err:
            problems.append(f"{where}/{name}: cannot be read ({_reason(err)})")
            continue
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "biuf":
            continue  # not one of the format's datasets; the schema checks above named the known ones
        if name in ("left", "right") and data.dtype.kind == "f" and not np.isfinite(data).all():
            problems.append(f"{where}/{name}: contains NaN or infinite values")
        if name == "disparity" and (data[np.isfinite(data)] < 0).any():
            problems.append(f"{where}/disparity: negative values (invalid pixels must be NaN)")
        if name in MASK_NAMES and data.size and data.max() > 1:
            problems.append(f"{where}/{name}: values other than 0 and 1")
    return problems


def validate_isolated(path: str | os.PathLike, deep: bool = True) -> list[str]:
    """:func:`validate` in a forked child process, so that a file that crashes the HDF5 C
    library (some corrupt headers make it segfault) is reported instead of killing us.

    Same result and errors as :func:`validate`; where ``os.fork`` is missing it is
    :func:`validate` itself. Meant for files nothing is known about (``polstereo inspect``).
    """
    import faulthandler
    import pickle
    import signal as signal_module
    import warnings

    if not hasattr(os, "fork"):
        return validate(path, deep)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork() beside threads (torch's); the child only reads an HDF5 file
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage cannot follow it
        code = 0
        try:
            os.close(read_end)
            faulthandler.disable()  # a crash here is the expected, reported outcome: no dump on stderr
            try:
                result: Any = ("ok", validate(path, deep))
            except PolstereoError as err:
                result = ("error", str(err), err.exit_code)
            except BaseException as err:  # noqa: BLE001 - a bug: let the parent re-raise it as such
                result = ("bug", f"{type(err).__name__}: {err}")
            with os.fdopen(write_end, "wb") as fh:
                pickle.dump(result, fh)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not data:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        name = signal_module.Signals(sig).name if sig else f"exit {os.WEXITSTATUS(status)}"
        if sig == signal_module.SIGINT:
            raise KeyboardInterrupt
        raise PolstereoError(f"{path}: the HDF5 library crashed reading it ({name}); the file is corrupt")
    result = pickle.loads(data)  # our own child's plain list/tuple, never the file's content
    if result[0] == "ok":
        return result[1]
    if result[0] == "error":
        raise PolstereoError(result[1], result[2])
    raise RuntimeError(f"validating {path} failed: {result[1]}")


def require_valid(path: str | os.PathLike) -> None:
    """Raise PolstereoError with the first violation (and their count) if ``path`` is invalid."""
    problems = validate(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PolstereoError(f"{path}: {problems[0]}{more}")
