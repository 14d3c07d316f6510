"""What every source layout shares: file roles, options, ground truth, the sample checks.

A converter turns one sample directory ``SRC/<sample>/`` into a :class:`Sample`. Each
layout declares its files as *roles* (``left``, ``right``, ``disparity``, ``mask`` ...)
with a default glob pattern, relative to the sample directory, that the user can
override; an empty pattern switches an optional role off. ``{angle}`` in a pattern is
replaced by each polarizer angle in degrees (``0``, ``45``, ``22.5``).

The ground truth (disparity, transparency mask, occlusion, validity, ``meta.json``) is
read the same way for every layout; a layout supplies the two angle stacks.
A sample that cannot be used raises :class:`SkipSample` with a reason the conversion
report shows; a file that is missing or corrupt surfaces the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from polstereo.data.h5.schema import DEFAULT_ANGLES_DEG, Sample, parse_glass_kinds
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.io.images import read_disparity, read_image
from polstereo.polar.color import luma

COLOR_MODES = ("auto", "mono", "rgb")
META_KEYS_FLOAT = ("focal_px", "baseline_m")

# Skip kinds, so a report can count them (the detail says which file or values).
MISSING = "missing file"
CORRUPT = "corrupt file"
SIZE_MISMATCH = "size mismatch"
NO_VALID_DISPARITY = "no valid disparity"
BAD_VALUES = "bad values"
AMBIGUOUS = "ambiguous files"


class SkipSample(Exception):
    """This sample cannot be converted; the conversion goes on and reports why."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail

    def __reduce__(self):  # crosses process boundaries with both fields
        return SkipSample, (self.kind, self.detail)


@dataclass(frozen=True)
class FileRole:
    """One kind of file in a sample directory.

    Attributes:
        pattern: default glob relative to the sample directory (may contain ``{angle}``).
        required: a missing file skips the sample; else the role is left empty.
        help: one line for ``--help`` and docs.
    """

    pattern: str
    required: bool
    help: str


# Ground-truth roles shared by every layout (a layout may add its own).
GROUND_TRUTH_ROLES: dict[str, FileRole] = {
    "disparity": FileRole("disparity.*", True, "disparity of the left view (.pfm, .npy, .exr or 16-bit .png)"),
    "mask": FileRole("mask.*", True, "transparency mask, nonzero = transparent surface"),
    "occlusion": FileRole("occlusion.*", False, "occlusion mask, nonzero = not visible in the right view"),
    "valid": FileRole("valid.*", False, "extra validity mask, nonzero = usable ground truth"),
    "meta": FileRole("meta.json", False, "JSON with focal_px, baseline_m, scene_id, glass_kinds, lighting"),
}


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source tree; shared by all layouts (a layout ignores what it has no use for).

    Attributes:
        patterns: role -> glob pattern overriding the layout's default ('' = role off).
        angles_deg: polarizer angles of the angle images (folder) or to synthesise (mitsuba).
        color: ``"mono"``, ``"rgb"`` or ``"auto"`` (the source's own).
        disp_scale: 16-bit PNG disparity scale (stored value = disparity * scale).
        bit_depth: significant bits of integer images (white level 2**bits - 1).
        white_level: stored value that means 1.0 (overrides ``bit_depth``).
        focal_px, baseline_m: used where a sample's meta.json has none.
        depth_kind: ``"range"`` (distance along the ray, Mitsuba's depth AOV) or ``"z"``.
        depth_channel: EXR channel holding depth (``depth`` also matches ``depth.T``).
        mosaic_layout: sensor layout name or 4 angles (row-major 2x2) for raw mosaics.
    """

    patterns: dict[str, str] = field(default_factory=dict)
    angles_deg: tuple[float, ...] = DEFAULT_ANGLES_DEG
    color: str = "auto"
    disp_scale: float = 256.0
    bit_depth: int | None = None
    white_level: float | None = None
    focal_px: float | None = None
    baseline_m: float | None = None
    depth_kind: str = "range"
    depth_channel: str = "depth"
    mosaic_layout: str = "IMX250MZR"


def format_angle(angle: float) -> str:
    """Degrees as they appear in file names: 0, 45, 22.5."""
    return f"{float(angle):g}"


def find_file(sample_dir: Path, pattern: str, role: str, required: bool) -> Path | None:
    """The one file matching ``pattern`` in ``sample_dir``; SkipSample if required and absent.

    More than one match is ambiguous and skips the sample whatever ``required`` says.
    """
    if not pattern:
        return None
    matches = sorted(p for p in sample_dir.glob(pattern) if p.is_file())
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise SkipSample(AMBIGUOUS, f"{role} pattern {pattern!r} matches {names}; make the pattern specific")
    if not matches:
        if required:
            raise SkipSample(MISSING, f"{role} ({pattern})")
        return None
    return matches[0]


def as_skip(err: PolstereoError) -> SkipSample:
    """A file-level PolstereoError (missing, corrupt) as a reason to skip the sample."""
    message = str(err)
    kind = MISSING if message.endswith("no such file") else CORRUPT
    return SkipSample(kind, message)


def to_color(stack: np.ndarray, color: str) -> np.ndarray:
    """``(A, C, H, W)`` -> C = 1 (``mono``) or 3 (``rgb``), keeping the dtype.

    RGB -> mono is the Rec. 709 luminance of the (linear) values; mono -> RGB repeats the
    channel; an alpha channel is dropped.
    """
    if stack.shape[1] == 4:
        stack = stack[:, :3]
    channels = stack.shape[1]
    if color == "mono" and channels == 3:
        mono = luma(stack, axis=1)
        if stack.dtype.kind == "u":
            mono = np.clip(np.round(mono), 0, np.iinfo(stack.dtype).max)
        return mono.astype(stack.dtype)
    if color == "rgb" and channels == 1:
        return np.repeat(stack, 3, axis=1)
    if channels not in (1, 3):
        raise SkipSample(BAD_VALUES, f"images have {channels} colour channels; expected 1 or 3")
    return stack


def image_to_chw(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` -> ``(C, H, W)``."""
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def read_mask(path: Path) -> np.ndarray:
    """``(H, W)`` bool: any channel nonzero."""
    image = read_image(path)
    return (image > 0).any(axis=-1) if image.ndim == 3 else image > 0


def read_meta(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SkipSample(CORRUPT, f"{path}: not readable JSON ({err})") from None
    if not isinstance(meta, dict):
        raise SkipSample(CORRUPT, f"{path}: expected a JSON object")
    for key in META_KEYS_FLOAT:
        value = meta.get(key)
        if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise SkipSample(BAD_VALUES, f"{path}: {key} must be a positive number, got {value!r}")
    kinds = meta.get("glass_kinds")
    if kinds is not None:
        if not isinstance(kinds, (str, list)) or not all(isinstance(k, str) for k in kinds):
            raise SkipSample(BAD_VALUES, f"{path}: glass_kinds must be a list of names or a comma-separated "
                                         f"string, got {kinds!r}")
        meta["glass_kinds"] = parse_glass_kinds(kinds)
    lighting = meta.get("lighting")
    if lighting is not None:
        if not isinstance(lighting, str) or "," in lighting or len(lighting.split()) > 1:
            raise SkipSample(BAD_VALUES, f"{path}: lighting must be one word, got {lighting!r}")
        meta["lighting"] = lighting.strip() or None
    return meta


def white_level_for(dtype: np.dtype, options: SourceOptions) -> float | None:
    """The white level to record: explicit, from ``bit_depth`` (integer data), else the dtype's default."""
    if options.white_level is not None:
        return float(options.white_level)
    if options.bit_depth is not None and np.dtype(dtype).kind == "u":
        return float(2 ** options.bit_depth - 1)
    return None


def check_white_level(left: np.ndarray, right: np.ndarray, options: SourceOptions) -> None:
    """Integer data above ``2**bit_depth - 1`` means a wrong ``--bit-depth``: skip, do not clip."""
    if options.bit_depth is None or left.dtype.kind != "u" or options.white_level is not None:
        return
    limit = 2 ** options.bit_depth - 1
    peak = int(max(left.max(), right.max()))
    if peak > limit:
        raise SkipSample(BAD_VALUES, f"image value {peak} exceeds {limit} for --bit-depth {options.bit_depth}")


class Converter:
    """One source layout: finds sample directories and turns each into a :class:`Sample`.

    Subclasses set ``name``, ``roles`` (their view files plus :data:`GROUND_TRUTH_ROLES`)
    and implement :meth:`load_views`; they may override :meth:`load_disparity`,
    :meth:`angles_deg` and :meth:`source_color`. Instances must pickle (they travel to
    worker processes), so they hold options only.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    roles: ClassVar[dict[str, FileRole]] = {}

    def __init__(self, options: SourceOptions | None = None):
        self.options = options or SourceOptions()
        unknown = sorted(set(self.options.patterns) - set(self.roles))
        if unknown:
            raise PolstereoError(f"layout {self.name!r} has no file role(s) {unknown}; "
                                 f"its roles are {sorted(self.roles)}", EXIT_USAGE)
        for role in ("left", "right"):
            if role in self.roles and not self.pattern(role):
                raise PolstereoError(f"the {role} pattern of layout {self.name!r} cannot be empty", EXIT_USAGE)

    # -------------------------------------------------------------------- layout hooks
    def angles_deg(self) -> tuple[float, ...]:
        """Polarizer angles of the stacks this converter produces, degrees."""
        return tuple(float(a) for a in self.options.angles_deg)

    def source_color(self, sample_dir: Path) -> str:
        """``"mono"`` or ``"rgb"``: what a sample directory holds (for ``color="auto"``)."""
        raise NotImplementedError

    def load_views(self, sample_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        """The left and right angle stacks ``(A, C, H, W)`` as stored (uint8/uint16/float32)."""
        raise NotImplementedError

    def load_disparity(self, sample_dir: Path, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
        """``(H, W)`` float32 disparity, NaN = invalid; None if the source has none."""
        path = self.find("disparity", sample_dir)
        return None if path is None else read_disparity(path, self.options.disp_scale)

    # -------------------------------------------------------------------- mechanism
    def pattern(self, role: str, angle: float | None = None) -> str:
        pattern = self.options.patterns.get(role, self.roles[role].pattern)
        return pattern.replace("{angle}", format_angle(angle)) if angle is not None else pattern

    def find(self, role: str, sample_dir: Path, angle: float | None = None) -> Path | None:
        return find_file(sample_dir, self.pattern(role, angle), role, self.roles[role].required)

    def discover(self, src: Path) -> list[str]:
        """Sample names: the non-hidden subdirectories of ``src``, sorted."""
        return sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))

    def resolve_color(self, src: Path, names: Sequence[str]) -> str:
        """The colour mode to write: the option, or for ``auto`` the first readable sample's."""
        if self.options.color != "auto":
            return self.options.color
        for name in names:
            try:
                return self.source_color(src / name)
            except (SkipSample, PolstereoError):
                continue
        return "mono"

    def load(self, sample_dir: Path, color: str) -> Sample:
        """The sample in ``sample_dir`` with its stacks in ``color``; SkipSample if unusable."""
        try:
            return self._load(sample_dir, color)
        except PolstereoError as err:
            raise as_skip(err) from None

    def _load(self, sample_dir: Path, color: str) -> Sample:
        if not sample_dir.is_dir():
            raise SkipSample(MISSING, f"sample directory {sample_dir}")
        meta = read_meta(self.find("meta", sample_dir))
        left, right = self.load_views(sample_dir)
        if left.shape != right.shape:
            raise SkipSample(SIZE_MISMATCH, f"left {_hw(left)} and right {_hw(right)} views differ")
        if left.dtype != right.dtype:
            raise SkipSample(BAD_VALUES, f"left ({left.dtype}) and right ({right.dtype}) dtypes differ")
        if left.dtype.kind == "f" and not (np.isfinite(left).all() and np.isfinite(right).all()):
            raise SkipSample(BAD_VALUES, "NaN or infinite values in the images")
        check_white_level(left, right, self.options)
        shape = left.shape[-2:]
        disparity = self.load_disparity(sample_dir, meta, shape)
        masks = {role: read_mask(path) for role in ("mask", "occlusion", "valid")
                 if (path := self.find(role, sample_dir)) is not None}
        for what, array in ({"disparity": disparity} | masks).items():
            if array is not None and array.shape != shape:
                raise SkipSample(SIZE_MISMATCH, f"{what} is {_hw(array)}, images are {_hw(left)}")
        if disparity is not None:
            if not np.isfinite(disparity).any():
                raise SkipSample(NO_VALID_DISPARITY, "the disparity map has no finite value")
            if (disparity[np.isfinite(disparity)] < 0).any():
                raise SkipSample(BAD_VALUES, "negative disparity values (polstereo disparities are positive: "
                                             "left x matches right x - d)")
        return Sample(
            left=to_color(left, color), right=to_color(right, color), disparity=disparity,
            transparent=masks.get("mask"), occlusion=masks.get("occlusion"), valid=masks.get("valid"),
            name=sample_dir.name, scene_id=str(meta.get("scene_id", "")),
            focal_px=_meta_float(meta, "focal_px", self.options.focal_px),
            baseline_m=_meta_float(meta, "baseline_m", self.options.baseline_m),
            white_level=white_level_for(left.dtype, self.options),
            glass_kinds=meta.get("glass_kinds"), lighting=meta.get("lighting"),
        )


def _meta_float(meta: dict[str, Any], key: str, default: float | None) -> float | None:
    value = meta.get(key, default)
    return None if value is None else float(value)


def _hw(array: np.ndarray) -> str:
    h, w = array.shape[-2:]
    return f"{w}x{h}"
