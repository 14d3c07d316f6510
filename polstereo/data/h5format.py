"""The polstereo HDF5 dataset format, version 1: schema, writer, reader, validator.

Layout (docs/format.md is the specification; keep the two in step)::

    /                       attrs: format="polstereo", format_version=1,
                                   angles_deg (float64[A]), color ("mono"|"rgb"),
                                   provenance (JSON text), created_by, num_samples
    /samples/000000         group, attrs: name, scene_id, [focal_px], [baseline_m],
                                   [glass_kinds] ("solid-sphere,pane"; "" = no glass), [lighting]
        left   (A, C, H, W) uint8 | uint16 | float32, attr white_level
        right  (A, C, H, W) same shape and dtype as left
        [disparity]   (H, W) float32, pixels of the left image, non-finite = invalid
        [transparent] (H, W) uint8 0/1, 1 = first visible surface is transparent
        [valid]       (H, W) uint8 0/1, extra validity mask (0 = invalid)
        [occlusion]   (H, W) uint8 0/1, 1 = left pixel not visible in the right view
    /samples/000001 ...

Plain datasets and attributes only (no pickled objects), so any HDF5 tool reads it.
Images are chunked in spatial tiles so a training crop reads only the tiles it
touches, compressed with a fast codec and protected by Fletcher-32 checksums.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from polstereo import __version__
from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path

FORMAT_NAME = "polstereo"
FORMAT_VERSION = 1
SAMPLES_GROUP = "samples"
DEFAULT_ANGLES_DEG = (0.0, 45.0, 90.0, 135.0)
COLOR_CHANNELS = {"mono": 1, "rgb": 3}
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
DEFAULT_WHITE_LEVEL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
MASK_NAMES = ("transparent", "valid", "occlusion")
SAMPLE_ATTRS_FLOAT = ("focal_px", "baseline_m")
SAMPLE_ATTRS_TEXT = ("glass_kinds", "lighting")  # optional descriptions of the scene (docs/format.md)
DISK_MARGIN = 2**20  # bytes kept free beyond a sample's size for HDF5's metadata and caches
TILE = 64  # spatial chunk edge: a 256x320 crop touches at most 5x6 tiles per dataset

# name -> (h5py compression, compression_opts, shuffle)
COMPRESSION = {
    "gzip": ("gzip", 1, True),
    "lzf": ("lzf", None, True),
    "none": (None, None, False),
}


def sample_key(index: int) -> str:
    """The group name of sample ``index`` under ``/samples``."""
    return f"{index:06d}"


@dataclass
class Sample:
    """One polarized stereo pair with its ground truth.

    Images are angle stacks ``(A, C, H, W)``: A polarizer angles (file attribute
    ``angles_deg``), C colour channels. Stored as uint8/uint16/float32; ``white_level`` is
    the stored value that means 1.0 (default 255, 65535 or 1.0 by dtype; 4095 for
    12-bit data in uint16). Readers that normalise return float32 in [0, 1].

    ``glass_kinds`` and ``lighting`` describe the scene for per-kind results
    (``polstereo eval --by``); the vocabulary is in docs/format.md.
    """

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray | None = None
    transparent: np.ndarray | None = None
    valid: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    name: str = ""
    scene_id: str = ""
    focal_px: float | None = None
    baseline_m: float | None = None
    white_level: float | None = None
    glass_kinds: tuple[str, ...] | None = None  # glass object kinds in the sample; () no glass, None unknown
    lighting: str | None = None                 # lighting family, one word; None unknown

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return tuple(self.left.shape[-2:])

    def valid_mask(self) -> np.ndarray | None:
        """Pixels with usable ground truth (see :func:`ground_truth_mask`); None without disparity."""
        return None if self.disparity is None else ground_truth_mask(self.disparity, self.valid)


def parse_glass_kinds(value: str | Sequence[str]) -> tuple[str, ...]:
    """Glass kinds from the attribute's text (``"solid-sphere,pane"``) or a list of names:
    whitespace around each name and empty names dropped; ``""`` -> ``()`` (no glass)."""
    if not isinstance(value, str):
        if not all(isinstance(name, str) for name in value):
            raise ValueError(f"glass kinds must be text, got {value!r}")
        value = ",".join(value)
    return tuple(name.strip() for name in value.split(",") if name.strip())


def ground_truth_mask(disparity: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The format's rule for usable ground truth: finite, non-negative disparity and ``valid`` (if any)."""
    mask = np.isfinite(disparity) & (np.nan_to_num(disparity, nan=-1.0) >= 0)
    if valid is not None:
        mask &= np.asarray(valid).astype(bool)
    return mask


# ---------------------------------------------------------------------------------------
# Writing


def _check_sample(sample: Sample, num_angles: int, channels: int) -> None:
    """Raise PolstereoError naming the first problem with ``sample``'s arrays."""
    label = f"sample {sample.name!r}" if sample.name else "sample"
    for view in ("left", "right"):
        img = np.asarray(getattr(sample, view))
        if img.ndim != 4 or img.shape[0] != num_angles or img.shape[1] != channels:
            raise PolstereoError(f"{label}: {view} image has shape {img.shape}, expected "
                                 f"({num_angles}, {channels}, H, W) (angles, channels, height, width)")
        if img.dtype not in IMAGE_DTYPES:
            raise PolstereoError(f"{label}: {view} image dtype {img.dtype} is not one of uint8, uint16, float32")
        if img.dtype.kind == "f" and not np.isfinite(img).all():
            raise PolstereoError(f"{label}: {view} image contains NaN or infinite values")
    if sample.left.shape != sample.right.shape or sample.left.dtype != sample.right.dtype:
        raise PolstereoError(f"{label}: left {sample.left.shape} {sample.left.dtype} and right "
                             f"{sample.right.shape} {sample.right.dtype} differ")
    hw = sample.shape
    for name in ("disparity", *MASK_NAMES):
        arr = getattr(sample, name)
        if arr is not None and np.shape(arr) != hw:
            raise PolstereoError(f"{label}: {name} has shape {np.shape(arr)}, expected {hw}")
    if sample.disparity is not None:
        disp = np.asarray(sample.disparity)
        if (disp[np.isfinite(disp)] < 0).any():
            raise PolstereoError(f"{label}: negative disparity values (the convention is positive disparity; "
                                 "mark invalid pixels with NaN)")
    for name in SAMPLE_ATTRS_FLOAT:
        value = getattr(sample, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            raise PolstereoError(f"{label}: {name} must be a positive number, got {value}")
    if sample.glass_kinds is not None and (isinstance(sample.glass_kinds, str) or any(
            not isinstance(k, str) or not k.strip() or "," in k for k in sample.glass_kinds)):
        raise PolstereoError(f"{label}: glass_kinds must be a list of names without commas, got "
                             f"{sample.glass_kinds!r}")
    if sample.lighting is not None and (not isinstance(sample.lighting, str) or "," in sample.lighting
                                        or len(sample.lighting.split()) > 1):
        raise PolstereoError(f"{label}: lighting must be one word, got {sample.lighting!r}")


class H5Writer:
    """Writes samples into a new polstereo HDF5 file, atomically.

    Use as a context manager: data goes to a temporary file beside ``path`` that is
    renamed to ``path`` only when the block exits normally. An exception or Ctrl-C
    removes the temporary file and leaves any previous ``path`` untouched.

    Args:
        path: final file name.
        angles_deg: polarizer angles of the image stacks, in degrees.
        color: ``"mono"`` or ``"rgb"``.
        provenance: JSON-serialisable description of where the data came from.
        compression: ``"lzf"`` (default; fastest to decode, built into h5py), ``"gzip"`` (level 1;
            built into every HDF5 library, about half the decode speed) or ``"none"``.
    """

    def __init__(self, path: str | os.PathLike, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                 color: str = "mono", provenance: dict[str, Any] | None = None, compression: str = "lzf"):
        if color not in COLOR_CHANNELS:
            raise PolstereoError(f"unknown colour mode {color!r}; use one of {sorted(COLOR_CHANNELS)}")
        if compression not in COMPRESSION:
            raise PolstereoError(f"unknown compression {compression!r}; use one of {sorted(COMPRESSION)}")
        angles = np.asarray(angles_deg, dtype=np.float64)
        if angles.ndim != 1 or len(angles) < 3 or len(np.unique(np.mod(angles, 180.0))) != len(angles):
            raise PolstereoError(f"need at least 3 distinct polarizer angles (mod 180), got {list(angles_deg)}")
        self.path = Path(path)
        self.angles_deg = angles
        self.color = color
        self.provenance = dict(provenance or {})
        self.compression = compression
        self.count = 0
        self._atomic = None
        self._file: h5py.File | None = None

    def __enter__(self) -> "H5Writer":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
        except OSError as err:
            self._atomic.__exit__(type(err), err, None)
            self._atomic = None
            raise _write_error(self.path, err) from None
        f = self._file
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["angles_deg"] = self.angles_deg
        f.attrs["color"] = self.color
        f.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True, default=str)
        f.attrs["created_by"] = f"polstereo {__version__}"
        f.create_group(SAMPLES_GROUP)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._file is not None and self._atomic is not None
        try:
            try:
                if exc_type is None:
                    self._file.attrs["num_samples"] = self.count
                self._file.close()
            except OSError as err:
                if exc_type is not None:
                    return False  # the file is discarded anyway; the first error is the one to report
                # a full disk often fails only here, when HDF5 flushes its buffers
                exc_type, exc, tb = PolstereoError, _write_error(self.path, err), None
                raise exc from None
        finally:
            self._file = None
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(exc_type, exc, tb)
        return False

    def append(self, sample: Sample) -> int:
        """Add one sample; returns its index. Raises PolstereoError on a malformed sample."""
        if self._file is None:
            raise RuntimeError("H5Writer.append outside its 'with' block")
        _check_sample(sample, len(self.angles_deg), COLOR_CHANNELS[self.color])
        self._ensure_space(sample)
        try:
            self._append(sample)
        except OSError as err:
            raise _write_error(self.path, err) from None
        self.count += 1
        return self.count - 1

    def _ensure_space(self, sample: Sample) -> None:
        """Stop before the disk is full: libhdf5 handles a failed write badly (errors while
        freeing its objects, at worst a segfault), so a full disk must never reach it."""
        arrays = [sample.left, sample.right, sample.disparity, *(getattr(sample, n) for n in MASK_NAMES)]
        self._ensure_bytes(sum(np.asarray(a).nbytes for a in arrays if a is not None))

    def _append(self, sample: Sample) -> None:
        group = self._file[SAMPLES_GROUP].create_group(sample_key(self.count))
        _write_sample_group(group, sample, self.compression, sample.name or sample_key(self.count))

    def append_encoded(self, encoded: "EncodedSample") -> int:
        """Add a sample that :func:`encode_sample` compressed already (in another process);
        returns its index. Only copies bytes: the chunks go into the file as they are.

        The file is the same, byte for byte, whichever process encoded the sample, so a
        writer fed only through here makes files that do not depend on who did the work.
        """
        if self._file is None:
            raise RuntimeError("H5Writer.append_encoded outside its 'with' block")
        if encoded.compression != self.compression:
            raise PolstereoError(f"sample {encoded.name!r} was encoded with {encoded.compression!r} compression, "
                                 f"this file uses {self.compression!r}")
        if encoded.num_angles != len(self.angles_deg) or encoded.channels != COLOR_CHANNELS[self.color]:
            raise PolstereoError(f"sample {encoded.name!r}: {encoded.num_angles} angles x {encoded.channels} "
                                 f"channels, this file holds {len(self.angles_deg)} x {COLOR_CHANNELS[self.color]}")
        self._ensure_bytes(encoded.nbytes)
        try:
            group = self._file[SAMPLES_GROUP].create_group(sample_key(self.count))
            for key, value in encoded.attrs.items():
                group.attrs[key] = value if key != "name" else (value or sample_key(self.count))
            opts = _dataset_options(self.compression)
            for ds_name, (shape, dtype, chunks, attrs, chunk_data) in encoded.datasets.items():
                ds = group.create_dataset(ds_name, shape=shape, dtype=dtype, chunks=chunks, **opts)
                for offset, filter_mask, data in chunk_data:
                    ds.id.write_direct_chunk(offset, data, filter_mask)
                for key, value in attrs.items():
                    ds.attrs[key] = value
        except OSError as err:
            raise _write_error(self.path, err) from None
        self.count += 1
        return self.count - 1

    def _ensure_bytes(self, nbytes: int) -> None:
        """Refuse a sample of ``nbytes`` (uncompressed or encoded) unless twice that plus a
        margin is free (see :meth:`_ensure_space`)."""
        need = 2 * nbytes + DISK_MARGIN
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return
        if free < need:
            raise PolstereoError(f"{self.path}: no space left on device ({free / 2**20:.1f} MiB free, the next "
                                 f"sample needs about {need / 2**20:.1f} MiB); nothing was left under that name")


def _dataset_options(compression: str) -> dict[str, Any]:
    codec, level, shuffle = COMPRESSION[compression]
    return dict(compression=codec, compression_opts=level, shuffle=shuffle, fletcher32=True)


def _write_sample_group(group: h5py.Group, sample: Sample, compression: str, name: str) -> None:
    """The datasets and attributes of one sample (already checked) in ``group``."""
    group.attrs["name"] = name
    group.attrs["scene_id"] = sample.scene_id
    for attr in SAMPLE_ATTRS_FLOAT:
        if getattr(sample, attr) is not None:
            group.attrs[attr] = float(getattr(sample, attr))
    if sample.glass_kinds is not None:
        group.attrs["glass_kinds"] = ",".join(k.strip() for k in sample.glass_kinds)
    if sample.lighting:
        group.attrs["lighting"] = sample.lighting.strip()
    h, w = sample.shape
    tile = (min(h, TILE), min(w, TILE))
    opts = _dataset_options(compression)
    white = sample.white_level if sample.white_level is not None else DEFAULT_WHITE_LEVEL[sample.left.dtype]
    for view in ("left", "right"):
        img = np.ascontiguousarray(getattr(sample, view))
        ds = group.create_dataset(view, data=img, chunks=img.shape[:2] + tile, **opts)
        ds.attrs["white_level"] = float(white)
    if sample.disparity is not None:
        group.create_dataset("disparity", data=np.asarray(sample.disparity, dtype=np.float32),
                             chunks=tile, **opts)
    for mask_name in MASK_NAMES:
        mask = getattr(sample, mask_name)
        if mask is not None:
            group.create_dataset(mask_name, data=np.asarray(mask).astype(bool).astype(np.uint8),
                                 chunks=tile, **opts)


@dataclass
class EncodedSample:
    """A sample whose datasets are already compressed HDF5 chunks (:func:`encode_sample`).

    Plain bytes and tuples, cheap to pickle: a worker process encodes, the writing process
    copies (:meth:`H5Writer.append_encoded`). ``datasets`` maps a dataset name to
    ``(shape, dtype, chunk shape, attrs, [(chunk offset, filter mask, bytes), ...])``.
    """

    name: str
    compression: str
    num_angles: int
    channels: int
    attrs: dict[str, Any]
    datasets: dict[str, tuple]
    nbytes: int  # uncompressed size of the arrays, for the free-space check


def encode_sample(sample: Sample, num_angles: int, channels: int, compression: str = "lzf") -> EncodedSample:
    """Check ``sample`` and compress its datasets as :class:`H5Writer` would store them.

    The compression runs through libhdf5's own filter pipeline (shuffle, codec,
    Fletcher-32) in an in-memory file, so the chunks are exactly the ones a direct
    :meth:`H5Writer.append` writes.
    """
    import io

    if compression not in COMPRESSION:
        raise PolstereoError(f"unknown compression {compression!r}; use one of {sorted(COMPRESSION)}")
    _check_sample(sample, num_angles, channels)
    arrays = [sample.left, sample.right, sample.disparity, *(getattr(sample, n) for n in MASK_NAMES)]
    nbytes = sum(np.asarray(a).nbytes for a in arrays if a is not None)
    with h5py.File(io.BytesIO(), "w") as f:
        group = f.create_group("sample")
        _write_sample_group(group, sample, compression, sample.name)
        datasets = {}
        for ds_name in ("left", "right", "disparity", *MASK_NAMES):  # the order append creates them in
            if ds_name not in group:
                continue
            ds = group[ds_name]
            chunks = []
            for i in range(ds.id.get_num_chunks()):
                offset = ds.id.get_chunk_info(i).chunk_offset
                filter_mask, data = ds.id.read_direct_chunk(offset)
                chunks.append((tuple(offset), filter_mask, bytes(data)))
            datasets[ds_name] = (ds.shape, ds.dtype.str, ds.chunks, dict(ds.attrs), chunks)
        attrs = dict(group.attrs)
    return EncodedSample(name=sample.name, compression=compression, num_angles=num_angles, channels=channels,
                         attrs=attrs, datasets=datasets, nbytes=nbytes)


def _write_error(path: Path, err: OSError) -> PolstereoError:
    """One line for a failed HDF5 write; h5py's OSError rarely carries an errno or the file name."""
    text = str(err)
    if err.errno is not None:
        reason = os.strerror(err.errno)
    elif "No space left" in text or "errno = 28" in text:
        reason = "No space left on device"
    elif "Read-only file system" in text or "errno = 30" in text:
        reason = "Read-only file system"
    else:
        reason = " ".join(text.split())[:160]
    return PolstereoError(f"{path}: cannot write ({reason}); nothing was left under that name")


def write_samples(path: str | os.PathLike, samples: Sequence[Sample] | Iterator[Sample], **writer_args) -> int:
    """Write an iterable of samples to ``path`` in one atomic step; returns the count."""
    with H5Writer(path, **writer_args) as writer:
        for sample in samples:
            writer.append(sample)
    return writer.count


# ---------------------------------------------------------------------------------------
# Reading


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


# ---------------------------------------------------------------------------------------
# Validation


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


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_ANGLES_DEG", "Sample", "H5Writer", "H5Reader", "EncodedSample",
    "encode_sample", "ShardedReader", "data_files", "open_dataset", "parse_glass_kinds",
    "write_samples", "validate", "validate_isolated", "require_valid", "sample_key",
]
