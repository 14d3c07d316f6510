"""Reading polstereo HDF5 files: :class:`H5Reader` (one file), :class:`ShardedReader` (shards
read as one dataset), :func:`open_dataset`, and the parsing of the root and sample
attributes that the validator shares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from polstereo.data.h5.schema import (COLOR_CHANNELS, DEFAULT_ANGLES_DEG, DEFAULT_WHITE_LEVEL, FORMAT_NAME,
                                      FORMAT_VERSION, MASK_NAMES, SAMPLE_ATTRS_FLOAT, SAMPLE_ATTRS_TEXT,
                                      SAMPLES_GROUP, Sample, parse_glass_kinds, sample_key)
from polstereo.errors import PolstereoError

def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise PolstereoError(f"{path}: no such file")
    if path.is_dir():
        raise PolstereoError(f"{path}: is a directory, expected a polstereo .h5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(")[0].strip().rstrip(",") or "unreadable"
        raise PolstereoError(f"{path}: not a readable HDF5 file ({reason}); it may be truncated or corrupt") from None


# What a corrupt or hand-made file makes h5py and numpy raise while reading it: a damaged
# B-tree (KeyError, RuntimeError), a failed checksum (OSError), an attribute of the wrong
# type (ValueError, TypeError), ... All of them mean "this file is broken", never a bug here.
CORRUPT_FILE_ERRORS = (KeyError, RuntimeError, OSError, ValueError, TypeError, IndexError, OverflowError,
                       AttributeError)


def _reason(err: BaseException) -> str:
    """A short one-line reason from an h5py/numpy exception."""
    text = " ".join(str(err).split())[:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _attr_text_value(value: Any) -> str | None:
    """A text attribute's value (str, bytes or a 0-d string array), else None."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "SUO":
        value = value[()]
    return _attr_str(value) if isinstance(value, (str, bytes)) else None


def _attr_text(f: h5py.File, name: str, default: str) -> str | None:
    """A text attribute, or None when it is present with another type (a number, an array)."""
    return _attr_text_value(f.attrs.get(name, default))


def _attr_int(value: Any) -> int | None:
    """An integer attribute (a scalar of an integer type, or a float that is a whole number), else None."""
    arr = np.asarray(value)
    if arr.shape not in ((), (1,)) or arr.dtype.kind not in "iuf":
        return None
    number = arr.reshape(())[()]
    if arr.dtype.kind == "f" and not (np.isfinite(number) and float(number).is_integer()):
        return None
    return int(number)


def _attr_positive(value: Any) -> float | None:
    """A positive finite number (scalar attribute), else None."""
    arr = np.asarray(value)
    if arr.shape not in ((), (1,)) or arr.dtype.kind not in "iuf":
        return None
    number = float(arr.reshape(())[()])
    return number if np.isfinite(number) and number > 0 else None


def _parse_angles(value: Any) -> tuple[tuple[float, ...] | None, str | None]:
    """``(angles, None)`` for a valid ``angles_deg`` attribute, else ``(None, problem)``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.ndim != 1:
        shown = " ".join(repr(value).split())[:60]
        return None, f"/: angles_deg must be a 1-D array of numbers (degrees), got {shown}"
    angles = tuple(float(a) for a in arr)
    if not np.isfinite(arr).all():
        return None, f"/: angles_deg {list(angles)} holds NaN or infinite values"
    if len(angles) < 3 or len(set(np.mod(angles, 180.0))) != len(angles):
        return None, f"/: angles_deg {list(angles)} must hold at least 3 distinct angles (mod 180)"
    return angles, None


def _file_attrs_and_problems(f: h5py.File, path: Path) -> tuple[dict[str, Any], list[str]]:
    """The root attributes and their schema violations.

    Raises PolstereoError for a file that is not polstereo format or has an unsupported
    version (nothing else in it can be trusted then).
    """
    if _attr_text(f, "format", "") != FORMAT_NAME:
        raise PolstereoError(f"{path}: not a polstereo dataset (root attribute format != 'polstereo')")
    raw_version = f.attrs.get("format_version", -1)
    version = _attr_int(raw_version)
    if version is None:
        shown = " ".join(repr(raw_version).split())[:60]
        raise PolstereoError(f"{path}: format_version must be an integer, got {shown}")
    if not 1 <= version <= FORMAT_VERSION:
        raise PolstereoError(f"{path}: format_version {version} is not supported "
                             f"(this polstereo reads 1..{FORMAT_VERSION}); upgrade polstereo")
    problems = []
    angles, problem = _parse_angles(f.attrs.get("angles_deg", DEFAULT_ANGLES_DEG))
    if problem:
        problems.append(problem)
    color = _attr_text(f, "color", "mono")
    if color not in COLOR_CHANNELS:
        problems.append(f"/: color {color if color is not None else f.attrs.get('color')!r} "
                        f"is not one of {sorted(COLOR_CHANNELS)}")
    provenance_text = _attr_text(f, "provenance", "{}")
    try:
        provenance = json.loads(provenance_text) if provenance_text is not None else {}
    except json.JSONDecodeError:
        provenance = {"text": provenance_text}
    if not isinstance(provenance, dict):
        provenance = {"text": provenance_text}
    attrs = {
        "format": FORMAT_NAME,
        "format_version": version,
        "angles_deg": angles,
        "color": color,
        "provenance": provenance,
        "created_by": _attr_text(f, "created_by", "") or "",
    }
    return attrs, problems


def _read_file_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    """The root attributes, or PolstereoError for a file that is not (valid) polstereo format."""
    attrs, problems = _file_attrs_and_problems(f, path)
    if problems:
        raise PolstereoError(f"{path}: {problems[0]}; run 'polstereo inspect' for details")
    return attrs


class H5Reader:
    """Random access to a polstereo HDF5 file.

    The file is opened lazily and re-opened in each process, so a reader can be handed
    to DataLoader workers (h5py handles must not cross a fork).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        f = _open(self.path)
        try:
            self.attrs = _read_file_attrs(f, self.path)
            if SAMPLES_GROUP not in f or not isinstance(f[SAMPLES_GROUP], h5py.Group):
                raise PolstereoError(f"{self.path}: no '/{SAMPLES_GROUP}' group")
            self.keys = sorted(f[SAMPLES_GROUP].keys())
            self.shapes = []
            for k in self.keys:
                group = f[SAMPLES_GROUP][k]
                if "right" not in group:
                    raise KeyError(f"sample {k} has no 'right' dataset")
                shape = tuple(group["left"].shape[-2:])
                if len(shape) != 2 or min(shape) < 1:
                    raise ValueError(f"sample {k}: image size {shape}")
                self.shapes.append(shape)
        except CORRUPT_FILE_ERRORS as err:
            raise PolstereoError(f"{self.path}: malformed sample ({_reason(err)}); "
                                 "run 'polstereo inspect' for details") from None
        finally:
            f.close()
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def angles_deg(self) -> tuple[float, ...]:
        return self.attrs["angles_deg"]

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> "H5Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def group(self, index: int) -> h5py.Group:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        return self._handle()[SAMPLES_GROUP][self.keys[index]]

    def has(self, index: int, name: str) -> bool:
        return name in self.group(index)

    def read(self, index: int, crop: tuple[int, int, int, int] | None = None, normalize: bool = True,
             fields: Sequence[str] | None = None) -> Sample:
        """Read sample ``index``, optionally only a crop ``(y0, x0, height, width)``.

        With ``normalize`` images come back as float32 in [0, 1] (divided by
        ``white_level``); otherwise in their stored dtype. ``fields`` limits which
        optional datasets are read (default all present).
        """
        try:
            g = self.group(index)
        except (KeyError, RuntimeError, OSError, ValueError, TypeError) as err:  # a damaged group index
            raise PolstereoError(f"{self.path}: sample {self.keys[index]} cannot be read ({_reason(err)}); "
                                 "the file is corrupt") from None
        h, w = self.shapes[index]
        if crop is None:
            ys, xs = slice(0, h), slice(0, w)
        else:
            y0, x0, ch, cw = (int(v) for v in crop)
            if y0 < 0 or x0 < 0 or ch <= 0 or cw <= 0 or y0 + ch > h or x0 + cw > w:
                raise PolstereoError(f"crop {crop} outside sample {index} of size {h}x{w}")
            ys, xs = slice(y0, y0 + ch), slice(x0, x0 + cw)
        try:
            images = {}
            raw_white = g["left"].attrs.get("white_level", DEFAULT_WHITE_LEVEL.get(g["left"].dtype, 1.0))
            white = _attr_positive(raw_white)
            if white is None:
                raise ValueError(f"white_level {raw_white!r} is not a positive number")
            for view in ("left", "right"):
                img = g[view][:, :, ys, xs]
                images[view] = (img.astype(np.float32) / np.float32(white)) if normalize else img
            optional = {}
            for name in ("disparity", *MASK_NAMES):
                if name in g and (fields is None or name in fields):
                    arr = g[name][ys, xs]
                    optional[name] = arr.astype(np.float32) if name == "disparity" else arr.astype(bool)
            attrs = g.attrs
            floats = {}
            for name in SAMPLE_ATTRS_FLOAT:
                if name in attrs:
                    floats[name] = _attr_positive(attrs[name])
                    if floats[name] is None:
                        raise ValueError(f"attribute {name}={attrs[name]!r} is not a positive number")
            label = {"name": _attr_str(attrs.get("name", self.keys[index])),
                     "scene_id": _attr_str(attrs.get("scene_id", "")), **_scene_description(attrs)}
        except OSError as err:
            raise PolstereoError(f"{self.path}: sample {self.keys[index]} cannot be read ({_reason(err)}); "
                                 "the file is corrupt (checksum or truncated data)") from None
        except CORRUPT_FILE_ERRORS as err:
            raise PolstereoError(f"{self.path}: sample {self.keys[index]} cannot be read ({_reason(err)}); "
                                 "run 'polstereo inspect' for details") from None
        return Sample(
            left=images["left"], right=images["right"], **optional, **label,
            focal_px=floats.get("focal_px"), baseline_m=floats.get("baseline_m"),
            white_level=1.0 if normalize else white,
        )

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.read(i)


def _scene_description(attrs: Any) -> dict[str, Any]:
    """``glass_kinds`` and ``lighting`` of a sample group (absent: not in the dict, i.e. unknown);
    ValueError for one that is not text."""
    out: dict[str, Any] = {}
    for name in SAMPLE_ATTRS_TEXT:
        if name in attrs:
            text = _attr_text_value(attrs[name])
            if text is None:
                raise ValueError(f"attribute {name}={attrs[name]!r} is not text")
            out[name] = parse_glass_kinds(text) if name == "glass_kinds" else (text.strip() or None)
    return out


class ShardedReader:
    """Several polstereo files read as ONE dataset: sample ``i`` is the ``i``-th of their
    concatenation, in the order given (:func:`data_files` sorts the shards of a glob).

    The same reading interface as :class:`H5Reader` (``len``, ``read``, ``shapes``,
    ``attrs``, ``angles_deg``, ``has``, ``group``); the shards must share their polarizer
    angles and colour mode. ``attrs`` are the first shard's.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], label: str | os.PathLike | None = None):
        if not paths:
            raise PolstereoError("no files to read")
        self.readers = [H5Reader(p) for p in paths]
        self.path = Path(label) if label is not None else self.readers[0].path
        first = self.readers[0]
        for reader in self.readers[1:]:
            if tuple(reader.angles_deg) != tuple(first.angles_deg) or reader.attrs["color"] != first.attrs["color"]:
                raise PolstereoError(f"{reader.path}: polarizer angles {list(reader.angles_deg)} / "
                                     f"{reader.attrs['color']} differ from {first.path}'s "
                                     f"{list(first.angles_deg)} / {first.attrs['color']}; shards of one dataset "
                                     "must match")
        self.attrs = first.attrs
        self.shapes = [shape for reader in self.readers for shape in reader.shapes]
        self.keys = [sample_key(i) for i in range(len(self.shapes))]
        self._where = [(r, i) for r, reader in enumerate(self.readers) for i in range(len(reader))]

    @property
    def angles_deg(self) -> tuple[float, ...]:
        return self.readers[0].angles_deg

    def __len__(self) -> int:
        return len(self._where)

    def _locate(self, index: int) -> tuple[H5Reader, int]:
        r, i = self._where[index]
        return self.readers[r], i

    def read(self, index: int, *args, **kwargs) -> Sample:
        reader, i = self._locate(index)
        return reader.read(i, *args, **kwargs)

    def has(self, index: int, name: str) -> bool:
        reader, i = self._locate(index)
        return reader.has(i, name)

    def group(self, index: int) -> h5py.Group:
        reader, i = self._locate(index)
        return reader.group(i)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def __enter__(self) -> "ShardedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.read(i)


_GLOB_CHARS = frozenset("*?[")


def data_files(spec: str | os.PathLike) -> list[Path]:
    """The files one data argument names: a file, or a glob (``data/train-*.h5``) -> its
    matches, sorted (shard order). A glob that matches nothing is a usage error."""
    import glob

    from polstereo.errors import EXIT_USAGE

    text = str(spec)
    if Path(text).exists() or not _GLOB_CHARS & set(text):
        return [Path(text)]
    matches = sorted(p for p in glob.glob(os.path.expanduser(text)) if not Path(p).is_dir())
    if not matches:
        raise PolstereoError(f"{text}: no file matches this pattern", EXIT_USAGE)
    return [Path(p) for p in matches]


def open_dataset(spec: str | os.PathLike) -> "H5Reader | ShardedReader":
    """A reader for one data argument: :class:`H5Reader` for a file, :class:`ShardedReader`
    for a glob of shards (one dataset, not a mixture)."""
    paths = data_files(spec)
    if len(paths) == 1 and str(paths[0]) == str(spec):
        return H5Reader(paths[0])
    return ShardedReader(paths, label=spec)
