"""Writing polstereo HDF5 files: :class:`H5Writer` (atomic), :func:`write_samples`, and
:func:`encode_sample` for compressing samples in worker processes.

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
from polstereo.data.h5.schema import (COLOR_CHANNELS, DEFAULT_ANGLES_DEG, DEFAULT_WHITE_LEVEL, FORMAT_NAME,
                                      FORMAT_VERSION, MASK_NAMES, SAMPLE_ATTRS_FLOAT, SAMPLES_GROUP, Sample,
                                      _check_sample, sample_key)
from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path

DISK_MARGIN = 2**20  # bytes kept free beyond a sample's size for HDF5's metadata and caches
TILE = 64  # spatial chunk edge: a 256x320 crop touches at most 5x6 tiles per dataset

# name -> (h5py compression, compression_opts, shuffle)
COMPRESSION = {
    "gzip": ("gzip", 1, True),
    "lzf": ("lzf", None, True),
    "none": (None, None, False),
}



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
