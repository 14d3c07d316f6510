"""Image and disparity files: PFM, NPY, 8/16-bit PNG (and other OpenCV formats), EXR.

Arrays are numpy, rows top to bottom: greyscale ``(H, W)``, colour ``(H, W, C)`` in RGB
order. Readers keep the stored dtype (uint8, uint16, float32); disparity readers return
float32 ``(H, W)`` in pixels with NaN where invalid.

Disparity conventions by extension:

- ``.pfm``: float32, non-finite = invalid (Middlebury writes ``inf``; we write ``inf``).
- ``.npy``: float32, non-finite = invalid (we write NaN).
- ``.png``: 16-bit, ``value = round(disparity * scale)``, 0 = invalid (KITTI, scale 256).
  As in the KITTI devkit, disparities that do not fit (negative, or above 65535/scale)
  are stored as invalid, and a valid disparity that rounds to 0 is stored as 1.
- ``.exr``: one float channel; ``disparity`` (what we write), ``Z`` or ``Y``, or the only
  channel of the file.

Every write is atomic (temporary name, then rename). A missing, unreadable or corrupt
file raises :class:`PolstereoError` with a one-line message naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Mapping

import cv2
import numpy as np

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path

PathLike = str | os.PathLike

DISPARITY_EXR_CHANNELS = ("disparity", "Z", "Y")
PNG16_MAX = 65535

# OpenCV orders colour channels BGR(A); polstereo uses RGB(A).
_CV_TO_RGB = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}
_RGB_TO_CV = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}


def _fail(path: PathLike, problem: str) -> PolstereoError:
    return PolstereoError(f"{path}: {problem}")


def _read_bytes(path: PathLike) -> bytes:
    """The file's bytes, or PolstereoError for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a directory, expected a file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from None


def _suffix(path: PathLike) -> str:
    return Path(path).suffix.lower()


# ---------------------------------------------------------------------------------------
# PFM (Portable Float Map)


_PFM_HEADER = re.compile(rb"\A(P[Ff])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file: ``(H, W)`` for ``Pf``, ``(H, W, 3)`` for ``PF``, float32, top row first.

    PFM stores rows bottom to top; a negative scale means little-endian data, a positive
    one big-endian. The scale's magnitude is not applied (it carries no unit by convention).
    """
    raw = _read_bytes(path)
    match = _PFM_HEADER.match(raw)
    if match is None:
        raise _fail(path, "not a PFM file (header must be 'PF' or 'Pf', width, height, scale)")
    kind, width, height, scale_text = match.groups()
    channels = 3 if kind == b"PF" else 1
    w, h = int(width), int(height)
    try:
        scale = float(scale_text)
    except ValueError:
        raise _fail(path, f"corrupt PFM header (scale {scale_text!r})") from None
    if scale == 0 or w == 0 or h == 0:
        raise _fail(path, "corrupt PFM header (zero size or scale)")
    expected = w * h * channels * 4
    data = raw[match.end():]
    if len(data) < expected:
        raise _fail(path, f"truncated PFM data ({len(data)} bytes, expected {expected})")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    pixels = np.frombuffer(data[:expected], dtype=dtype).astype(np.float32)
    shape = (h, w, 3) if channels == 3 else (h, w)
    return np.ascontiguousarray(pixels.reshape(shape)[::-1])


def write_pfm(path: PathLike, image: np.ndarray) -> None:
    """Write ``(H, W)`` (``Pf``) or ``(H, W, 3)`` (``PF``) float data as little-endian PFM."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise PolstereoError(f"{path}: PFM holds (H, W) or (H, W, 3) images, got shape {image.shape}")
    kind = "PF" if image.ndim == 3 else "Pf"
    header = f"{kind}\n{image.shape[1]} {image.shape[0]}\n-1.0\n".encode("ascii")
    body = np.ascontiguousarray(image[::-1], dtype="<f4").tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + body)


# ---------------------------------------------------------------------------------------
# NPY


def read_npy(path: PathLike) -> np.ndarray:
    """Load a ``.npy`` array (no pickles)."""
    _read_bytes(path)  # existence and readability, with our message
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _fail(path, f"not a readable .npy array ({_first_line(err)})") from None


def write_npy(path: PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------
# OpenCV formats (PNG, TIFF, JPEG, BMP, ...)


def _read_cv(path: PathLike) -> np.ndarray:
    buffer = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if image is None:
        raise _fail(path, "not a readable image (corrupt or unsupported format)")
    if image.ndim == 3 and image.shape[2] in _CV_TO_RGB:
        image = cv2.cvtColor(image, _CV_TO_RGB[image.shape[2]])
    return image


def _write_cv(path: PathLike, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] in _RGB_TO_CV:
        image = cv2.cvtColor(np.ascontiguousarray(image), _RGB_TO_CV[image.shape[2]])
    suffix = _suffix(path)
    if suffix == ".png" and image.dtype not in (np.uint8, np.uint16):
        raise PolstereoError(f"{path}: PNG stores uint8 or uint16 images, got {image.dtype}; "
                             "use .exr, .pfm, .npy or .tiff for float data")
    try:
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image))
    except cv2.error as err:
        raise PolstereoError(f"{path}: cannot encode {image.dtype} {image.shape} image as {suffix} "
                             f"({_first_line(err)})") from None
    if not ok:
        raise PolstereoError(f"{path}: cannot encode {image.dtype} {image.shape} image as {suffix}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


# ---------------------------------------------------------------------------------------
# EXR (OpenEXR 3.x; OpenCV's wheel has no EXR codec)


def _openexr():
    try:
        import OpenEXR
    except ImportError:
        raise PolstereoError("reading or writing EXR files needs the OpenEXR package: "
                             "install OpenEXR (pip install 'OpenEXR>=3.2')") from None
    return OpenEXR


def read_exr(path: PathLike) -> dict[str, np.ndarray]:
    """All channels of an EXR file (first part) by name: ``name -> (H, W) float32``.

    Channel names are kept as stored, e.g. ``R``, ``S0.R``, ``depth.T``. Half and uint
    channels are converted to float32.
    """
    OpenEXR = _openexr()
    _read_bytes(path)
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            return {name: np.asarray(channel.pixels, dtype=np.float32)
                    for name, channel in exr.channels().items()}
    except (RuntimeError, ValueError, OSError) as err:
        raise _fail(path, f"not a readable EXR file ({_first_line(err)})") from None


def write_exr(path: PathLike, channels: Mapping[str, np.ndarray], half: bool = False) -> None:
    """Write named ``(H, W)`` channels (float32, or float16 with ``half``) to a ZIP-compressed EXR."""
    OpenEXR = _openexr()
    if not channels:
        raise PolstereoError(f"{path}: an EXR file needs at least one channel")
    dtype = np.float16 if half else np.float32
    pixels = {name: np.ascontiguousarray(np.asarray(data), dtype=dtype) for name, data in channels.items()}
    shapes = {arr.shape for arr in pixels.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise PolstereoError(f"{path}: EXR channels must all be (H, W) arrays of one size, got "
                             f"{ {name: arr.shape for name, arr in pixels.items()} }")
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, pixels).write(str(tmp))


def _exr_as_image(path: PathLike) -> np.ndarray:
    """An EXR file as an image array: RGB(A) channels stacked, else its one channel."""
    channels = read_exr(path)
    for names in (("R", "G", "B", "A"), ("R", "G", "B")):
        if all(n in channels for n in names):
            return np.stack([channels[n] for n in names], axis=-1)
    if "Y" in channels:
        return channels["Y"]
    if len(channels) == 1:
        return next(iter(channels.values()))
    raise _fail(path, f"cannot tell which channels form the image ({sorted(channels)}); use read_exr")


def _write_exr_image(path: PathLike, image: np.ndarray) -> None:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        write_exr(path, {"Y": image})
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        write_exr(path, {name: image[..., i] for i, name in enumerate("RGBA"[:image.shape[2]])})
    else:
        raise PolstereoError(f"{path}: cannot write an image of shape {image.shape} as EXR")


# ---------------------------------------------------------------------------------------
# Images: one table, one mechanism


_IMAGE_READERS: dict[str, Callable[[PathLike], np.ndarray]] = {
    ".pfm": read_pfm,
    ".npy": read_npy,
    ".exr": _exr_as_image,
}
_IMAGE_WRITERS: dict[str, Callable[[PathLike, np.ndarray], None]] = {
    ".pfm": write_pfm,
    ".npy": write_npy,
    ".exr": _write_exr_image,
}


def read_image(path: PathLike) -> np.ndarray:
    """Read an image keeping its dtype: ``(H, W)`` or ``(H, W, C)`` RGB(A), top row first.

    PNG/TIFF/JPEG/... through OpenCV (uint8 or uint16 as stored), PFM/EXR as float32,
    NPY as stored.
    """
    image = _IMAGE_READERS.get(_suffix(path), _read_cv)(path)
    if image.ndim not in (2, 3):
        raise _fail(path, f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    return image


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write ``(H, W)`` or ``(H, W, C)`` RGB(A) by extension; PNG takes uint8/uint16 only."""
    _IMAGE_WRITERS.get(_suffix(path), _write_cv)(path, image)


# ---------------------------------------------------------------------------------------
# Disparity


def _disparity_from_exr(path: PathLike) -> np.ndarray:
    channels = read_exr(path)
    for name in DISPARITY_EXR_CHANNELS:
        if name in channels:
            return channels[name]
    if len(channels) == 1:
        return next(iter(channels.values()))
    raise _fail(path, f"no disparity channel: expected one of {list(DISPARITY_EXR_CHANNELS)} "
                      f"or a single channel, found {sorted(channels)}")


def read_disparity(path: PathLike, scale: float = 256.0) -> np.ndarray:
    """Disparity ``(H, W)`` float32 in pixels, NaN where invalid, chosen by extension.

    ``scale`` applies to 16-bit PNG only (stored value = disparity * scale, 0 = invalid).
    """
    suffix = _suffix(path)
    if suffix == ".png":
        stored = _read_cv(path)
        if stored.ndim != 2 or stored.dtype != np.uint16:
            raise _fail(path, f"a PNG disparity must be single-channel 16-bit, got {stored.dtype} "
                              f"with shape {stored.shape}")
        disp = stored.astype(np.float32) / np.float32(scale)
        disp[stored == 0] = np.nan
        return disp
    readers = {".pfm": read_pfm, ".npy": read_npy, ".exr": _disparity_from_exr}
    if suffix not in readers:
        raise _fail(path, f"unknown disparity format {suffix!r}; use .pfm, .npy, .png (16-bit) or .exr")
    disp = np.asarray(readers[suffix](path))
    if disp.ndim == 3 and disp.shape[2] == 1:
        disp = disp[..., 0]
    if disp.ndim != 2:
        raise _fail(path, f"disparity must be a single-channel (H, W) map, got shape {disp.shape}")
    if disp.dtype.kind not in "fiu":
        raise _fail(path, f"disparity must be numeric, got dtype {disp.dtype}")
    disp = disp.astype(np.float32)
    disp[~np.isfinite(disp)] = np.nan
    return disp


def encode_png16_disparity(disp: np.ndarray, scale: float = 256.0) -> np.ndarray:
    """``(H, W)`` disparity -> uint16 with the KITTI rules (see module docstring)."""
    disp = np.asarray(disp, dtype=np.float64)
    stored = np.round(np.nan_to_num(disp, nan=-1.0, posinf=-1.0, neginf=-1.0) * scale)
    valid = np.isfinite(disp) & (disp >= 0) & (stored <= PNG16_MAX)
    return np.where(valid, np.maximum(stored, 1), 0).astype(np.uint16)


def write_disparity(path: PathLike, disp: np.ndarray, scale: float = 256.0) -> None:
    """Write ``(H, W)`` disparity in pixels (NaN/inf = invalid) by extension.

    ``.pfm`` stores invalid as ``inf`` (Middlebury), ``.npy`` as NaN, ``.png`` as 0
    (16-bit, value = disparity * ``scale``), ``.exr`` as NaN in channel ``disparity``.
    """
    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim != 2:
        raise PolstereoError(f"{path}: disparity must be (H, W), got shape {disp.shape}")
    suffix = _suffix(path)
    if suffix == ".pfm":
        write_pfm(path, np.where(np.isfinite(disp), disp, np.float32(np.inf)))
    elif suffix == ".npy":
        write_npy(path, np.where(np.isfinite(disp), disp, np.float32(np.nan)))
    elif suffix == ".png":
        _write_cv(path, encode_png16_disparity(disp, scale))
    elif suffix == ".exr":
        write_exr(path, {"disparity": np.where(np.isfinite(disp), disp, np.float32(np.nan))})
    else:
        raise PolstereoError(f"{path}: unknown disparity format {suffix!r}; use .pfm, .npy, .png or .exr")


__all__ = [
    "read_pfm", "write_pfm", "read_npy", "write_npy", "read_exr", "write_exr",
    "read_image", "write_image", "read_disparity", "write_disparity", "encode_png16_disparity",
]


# ---------------------------------------------------------------------------- pixel values to [0, 1]
def white_level(dtype: np.dtype, bit_depth: int | None, source: str) -> float:
    """The stored value that means 1.0: 1 for floats, ``2**bit_depth - 1`` or the dtype's maximum."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise PolstereoError(f"{source}: unsupported image type {dtype}; expected 8/16-bit integers or floats")
    bits = dtype.itemsize * 8
    if bit_depth is None:
        return float(2 ** bits - 1)
    if bit_depth > bits:
        raise PolstereoError(f"{source}: --bit-depth {bit_depth} does not fit a {bits}-bit image")
    return float(2 ** bit_depth - 1)


def check_white(image: np.ndarray, white: float, bit_depth: int | None, source: str) -> None:
    if image.dtype.kind != "f" and image.size and image.max() > white:
        raise PolstereoError(f"{source}: values up to {int(image.max())} exceed the {bit_depth}-bit white level "
                             f"{int(white)}; check --bit-depth")


def to_unit_range(image: np.ndarray, bit_depth: int | None, source: str) -> np.ndarray:
    """Stored values -> float32 with 1.0 = white level; values above an integer white level are an error."""
    white = white_level(image.dtype, bit_depth, source)
    check_white(image, white, bit_depth, source)
    return image.astype(np.float32) / np.float32(white)


def read_view_image(path: Path, bit_depth: int | None) -> np.ndarray:
    """One ordinary or angle image -> ``(C, H, W)`` float32 (C = 1 or 3; alpha dropped)."""
    image = read_image(path)
    if image.ndim == 3:
        channels = image.shape[2]
        if channels in (1, 2):  # grey (+ alpha)
            image = image[..., 0]
        elif channels in (3, 4):  # RGB (+ alpha)
            image = np.moveaxis(image[..., :3], -1, 0)
        else:
            raise PolstereoError(f"{path}: {channels}-channel images are not supported")
    if image.ndim == 2:
        image = image[None]
    return to_unit_range(image, bit_depth, str(path))
