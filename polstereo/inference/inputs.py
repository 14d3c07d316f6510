"""Find and load the stereo pairs that ``polstereo infer`` runs on.

Each input kind is one small resolver behind one interface (:class:`InputKind`): it says
whether it accepts an :class:`InputSpec` and lists the pairs it finds (name + loader), so
that every naming or pairing problem shows before a model runs. The first kind in
:data:`INPUT_KINDS` that accepts the spec wins:

=============  ==========================================================================
``hdf5``       ``data``: every sample of a polstereo HDF5 file
``mosaic``     ``mosaic`` set: raw polarization-sensor images, ``left``/``right`` files,
               directories or globs
``angles``     ``left``/``right`` are patterns with ``{angle}`` (and optionally ``{name}``)
``middlebury`` ``left`` a Middlebury scene folder (``im0.png``/``im1.png``) or a folder of
               them, no ``right``
``ordinary``   ``left``/``right`` ordinary images: files, directories or globs
=============  ==========================================================================

Every kind yields :class:`StereoPair` s: ``(A, C, H, W)`` float32 stacks in [0, 1] (white
level 1.0) with their polarizer angles; ordinary pairs have ``A = 1`` and no angles.

Directories and globs pair files by name: a directory stands for its image files, keyed by
file stem (``L/0001.png`` pairs with ``R/0001.png``); in a glob the text matched by the
wildcards is the key (``cam0/*_a.png`` pairs ``cam0/0001_a.png`` with ``cam1/0001_b.png`` for
``cam1/*_b.png``). A file without a partner is an error, not a silent skip.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from polstereo.data.h5.reader import H5Reader
from polstereo.errors import PolstereoError
from polstereo.io.images import check_white, read_image, read_view_image, to_unit_range, white_level
from polstereo.io.layouts import MIDDLEBURY_LEFT, MIDDLEBURY_RIGHT, middlebury_scenes
from polstereo.polar.mosaic import demosaic, layout_angles_deg, resolve_layout
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG, stokes_from_angles, unpolarized_intensity

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".bmp", ".jpg", ".jpeg",
                            ".pfm", ".npy", ".exr"})
PLACEHOLDERS = ("name", "angle")
_GLOB_CHARS = frozenset("*?[")


# ---------------------------------------------------------------------------- data
@dataclass
class StereoPair:
    """One stereo pair ready for the model.

    left, right: ``(A, C, H, W)`` float32, 1.0 = white level; A polarizer angles
        (``angles_deg``), or A = 1 and ``angles_deg`` None for an ordinary pair; C = 1 or 3.
    focal_px, baseline: camera data carried by the input (HDF5 samples), or None.
    """

    name: str
    kind: str
    left: np.ndarray
    right: np.ndarray
    angles_deg: tuple[float, ...] | None
    focal_px: float | None = None
    baseline: float | None = None

    @property
    def polarized(self) -> bool:
        return self.angles_deg is not None

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return tuple(self.left.shape[-2:])

    @property
    def channels(self) -> int:
        return int(self.left.shape[1])

    def intensity(self, view: str = "left") -> np.ndarray:
        """The image a plain camera would see, ``(C, H, W)``: S0/2 for angle stacks, clipped to [0, 1]."""
        stack = getattr(self, view)
        image = stack[0] if not self.polarized else unpolarized_intensity(
            stokes_from_angles(stack, self.angles_deg, axis=0), axis=0)
        return np.clip(image, 0.0, 1.0)

    def with_views(self, left: np.ndarray, right: np.ndarray) -> "StereoPair":
        return dataclasses.replace(self, left=left, right=right)

    def check(self) -> "StereoPair":
        """Raise :class:`PolstereoError` unless left and right are matching stacks."""
        for view in ("left", "right"):
            stack = getattr(self, view)
            if stack.ndim != 4 or stack.shape[1] not in (1, 3):
                raise PolstereoError(f"pair {self.name}: {view} must be an (A, C, H, W) stack with C = 1 or 3, "
                                     f"got shape {stack.shape}")
        if self.left.shape != self.right.shape:
            raise PolstereoError(f"pair {self.name}: left is {_describe(self.left)} but right is "
                                 f"{_describe(self.right)}; both views must have the same size and channels")
        if self.polarized and len(self.angles_deg) != self.left.shape[0]:
            raise PolstereoError(f"pair {self.name}: {self.left.shape[0]} angle images for "
                                 f"{len(self.angles_deg)} polarizer angles")
        return self


def _describe(stack: np.ndarray) -> str:
    return f"{stack.shape[-2]}x{stack.shape[-1]} (HxW) with {stack.shape[1]} channel(s)"


@dataclass(frozen=True)
class InputSpec:
    """What the user pointed at (the ``--left/--right/--data/--mosaic/...`` options)."""

    left: str | None = None
    right: str | None = None
    data: str | None = None
    mosaic: str | None = None
    bit_depth: int | None = None
    angles_deg: tuple[float, ...] = DEFAULT_ANGLES_DEG


@dataclass(frozen=True)
class PairSource:
    """A pair found on disk but not yet read; ``load()`` reads and checks it."""

    name: str
    kind: str
    load: Callable[[], StereoPair]


Found = list[tuple[str, Callable[[str], StereoPair]]]  # (proposed name, loader(final name))


@dataclass(frozen=True)
class InputKind:
    """One input kind: ``accepts(spec)`` and ``discover(spec) -> [(name, loader), ...]``."""

    name: str
    accepts: Callable[[InputSpec], bool]
    discover: Callable[[InputSpec], Found]


# ---------------------------------------------------------------------------- image reading
def read_mosaic(path: Path, layout: str, bit_depth: int | None) -> np.ndarray:
    """A raw sensor image -> ``(4, C, H, W)`` float32 angle stack at full resolution."""
    raw = read_image(path)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise PolstereoError(f"{path}: a raw mosaic must be a single-channel image, got shape {raw.shape}")
    white = white_level(raw.dtype, bit_depth, str(path))
    check_white(raw, white, bit_depth, str(path))
    # Demosaicing is linear, so normalising after it equals normalising the raw values.
    return (demosaic(raw, layout) / np.float32(white)).astype(np.float32)


# ---------------------------------------------------------------------------- pairing files
def _has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _glob_regex(pattern: str) -> re.Pattern:
    """A regex matching what ``glob.glob(pattern)`` returns, one capture group per wildcard."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("([^/]*)")
        elif c == "?":
            out.append("([^/])")
        elif c == "[" and pattern.find("]", i + 2) > 0:
            end = pattern.find("]", i + 2)
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("([" + body.replace("\\", "\\\\") + "])")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def keyed_files(arg: str, option: str) -> dict[str, Path] | None:
    """Image files of a directory (key = stem) or glob (key = wildcard text); None for a plain file."""
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        keyed = [(p.stem, p) for p in files]
    elif _has_glob(arg):
        regex = _glob_regex(arg)
        keyed = []
        for match in sorted(glob.glob(arg)):
            found = regex.match(match)
            if Path(match).is_file() and found:
                keyed.append(("_".join(found.groups()) or Path(match).stem, Path(match)))
    else:
        return None
    result: dict[str, Path] = {}
    for key, file in keyed:
        if key in result:
            raise PolstereoError(f"{option} {arg}: {result[key].name} and {file.name} both pair as {key!r}; "
                                 "keep one image per name")
        result[key] = file
    return result


def _require_file(path: Path, option: str) -> Path:
    if not path.exists():
        raise PolstereoError(f"{option}: no such file or directory: {path}")
    if not path.is_file():
        raise PolstereoError(f"{option}: not a file: {path}")
    return path


def pair_files(left: str, right: str) -> list[tuple[str, Path, Path]]:
    """``(name, left file, right file)`` for two files, or two directories/globs paired by name."""
    left_files, right_files = keyed_files(left, "--left"), keyed_files(right, "--right")
    if left_files is None and right_files is None:
        return [(Path(left).stem, _require_file(Path(left), "--left"), _require_file(Path(right), "--right"))]
    if left_files is None or right_files is None:
        plain = "--left" if left_files is None else "--right"
        raise PolstereoError(f"--left and --right must both be files, or both directories/globs; {plain} is a "
                             f"file ({left if left_files is None else right})")
    if not left_files:
        raise PolstereoError(f"--left {left}: no image files found")
    for side, ours, theirs, other in (("--left", left_files, right_files, right),
                                      ("--right", right_files, left_files, left)):
        lonely = sorted(set(ours) - set(theirs))
        if lonely:
            raise PolstereoError(f"{side}: {len(lonely)} image(s) have no partner in {other} "
                                 f"(e.g. {ours[lonely[0]]}); pairs are matched by file name")
    return [(key, left_files[key], right_files[key]) for key in sorted(left_files)]


# ---------------------------------------------------------------------------- angle patterns
def _angle_value(angle: float) -> int | float:
    return int(angle) if float(angle).is_integer() else float(angle)


@dataclass(frozen=True)
class AnglePattern:
    """A path pattern with ``{angle}`` (polarizer angle, degrees) and optional ``{name}`` (pair name).

    Format specs work as in Python (``{angle:03d}`` -> ``045``); ``{{``/``}}`` are literal
    braces. ``{name}`` matches any text without ``/``; when it appears several times it
    must be the same text each time.
    """

    text: str
    parts: tuple[tuple[str, str | None, str], ...]

    @classmethod
    def parse(cls, text: str, option: str) -> "AnglePattern":
        try:
            parts = tuple((literal, field, spec or "") for literal, field, spec, _ in string.Formatter().parse(text))
        except ValueError as err:
            raise PolstereoError(f"{option} pattern {text!r}: {err}") from None
        fields = {field for _, field, _ in parts if field is not None}
        unknown = sorted(fields - set(PLACEHOLDERS))
        if unknown:
            raise PolstereoError(f"{option} pattern {text!r}: unknown placeholder(s) "
                                 f"{', '.join('{' + u + '}' for u in unknown)}; use {{name}} and {{angle}}")
        if "angle" not in fields:
            raise PolstereoError(f"{option} pattern {text!r} has no {{angle}} placeholder")
        return cls(text, parts)

    @property
    def has_name(self) -> bool:
        return any(field == "name" for _, field, _ in self.parts)

    def _render(self, literal: Callable[[str], str], name: Callable[[str, bool], str],
                angle: Callable[[str], str]) -> str:
        out, seen_name = [], False
        for text, field, spec in self.parts:
            out.append(literal(text))
            if field == "name":
                out.append(name(spec, seen_name))
                seen_name = True
            elif field == "angle":
                out.append(angle(spec))
        return "".join(out)

    def format_angle(self, angle: float, spec: str) -> str:
        try:
            return format(_angle_value(angle), spec)
        except ValueError:
            raise PolstereoError(f"pattern {self.text!r}: format {{angle:{spec}}} does not fit angle {angle:g}") \
                from None

    def path(self, name: str | None, angle: float) -> Path:
        return Path(self._render(lambda t: t, lambda spec, _: format(name or "", spec),
                                 lambda spec: self.format_angle(angle, spec)))

    def default_name(self) -> str:
        """A pair name for a pattern without ``{name}``: its file stem with ``{angle}`` left out."""
        return _default_name(Path(self._render(lambda t: t, lambda spec, _: "", lambda spec: "")))

    def names(self, angle: float) -> list[str]:
        """Pair names of the files that exist for ``angle``, sorted."""
        pattern = self._render(glob.escape, lambda spec, _: "*",
                               lambda spec: glob.escape(self.format_angle(angle, spec)))
        regex = re.compile(self._render(
            re.escape, lambda spec, seen: "(?P=name)" if seen else "(?P<name>[^/]+)",
            lambda spec: re.escape(self.format_angle(angle, spec))) + r"\Z")
        names = {m.group("name") for m in map(regex.match, glob.glob(pattern)) if m}
        return sorted(names)


def _default_name(path: Path) -> str:
    stem = re.sub(r"[_\-. ]+$", "", path.stem)
    return stem or path.parent.name or "pair"


# ---------------------------------------------------------------------------- kinds
def _discover_hdf5(spec: InputSpec) -> Found:
    reader = H5Reader(spec.data)
    found: Found = []
    for i in range(len(reader)):
        name = reader.group(i).attrs.get("name", reader.keys[i])
        name = name.decode() if isinstance(name, bytes) else str(name)

        def load(final: str, i=i) -> StereoPair:
            sample = reader.read(i, normalize=True, fields=())
            return StereoPair(final, "hdf5", sample.left, sample.right, tuple(reader.angles_deg),
                              focal_px=sample.focal_px, baseline=sample.baseline_m)

        found.append((name or reader.keys[i], load))
    reader.close()
    if not found:
        raise PolstereoError(f"{spec.data}: the file holds no samples")
    return found


def _discover_mosaic(spec: InputSpec) -> Found:
    resolve_layout(spec.mosaic)  # unknown layout names fail before any file is read
    angles = layout_angles_deg(spec.mosaic)

    def loader(left: Path, right: Path):
        return lambda final: StereoPair(final, "mosaic", read_mosaic(left, spec.mosaic, spec.bit_depth),
                                        read_mosaic(right, spec.mosaic, spec.bit_depth), angles)

    return [(name, loader(left, right)) for name, left, right in pair_files(spec.left, spec.right)]


def _discover_angles(spec: InputSpec) -> Found:
    if spec.right is None:
        raise PolstereoError("--right is missing: give a right-view pattern with {angle} too")
    left, right = AnglePattern.parse(spec.left, "--left"), AnglePattern.parse(spec.right, "--right")
    if left.has_name != right.has_name:
        raise PolstereoError("--left and --right patterns must both use {name}, or neither")
    angles = tuple(float(a) for a in spec.angles_deg)
    names: list[str | None] = left.names(angles[0]) if left.has_name else [None]
    if not names:
        raise PolstereoError(f"--left pattern {spec.left!r}: no files match "
                             f"{left.path('*', angles[0])} (angle {angles[0]:g})")
    found: Found = []
    for name in names:
        files = {view: [pattern.path(name, a) for a in angles] for view, pattern in (("left", left), ("right", right))}
        for view, paths in files.items():
            for angle, path in zip(angles, paths):
                if not path.is_file():
                    label = f" of pair {name}" if name is not None else ""
                    raise PolstereoError(f"--{view}: missing angle image {path} ({angle:g} deg{label})")

        def load(final: str, files=files) -> StereoPair:
            views = [_stack_angles(files[view], spec.bit_depth, final) for view in ("left", "right")]
            return StereoPair(final, "angles", views[0], views[1], angles)

        found.append((name if name is not None else left.default_name(), load))
    return found


def _stack_angles(paths: Sequence[Path], bit_depth: int | None, name: str) -> np.ndarray:
    images = [read_view_image(p, bit_depth) for p in paths]
    if len({im.shape for im in images}) != 1:
        sizes = ", ".join(f"{p.name} {im.shape[1]}x{im.shape[2]}x{im.shape[0]}" for p, im in zip(paths, images))
        raise PolstereoError(f"pair {name}: the angle images differ in size or channels ({sizes})")
    return np.stack(images)


def _middlebury_scenes(spec: InputSpec) -> list[Path]:
    if spec.left is None or spec.right is not None or not Path(spec.left).is_dir():
        return []
    return middlebury_scenes(Path(spec.left))


def _discover_middlebury(spec: InputSpec) -> Found:
    found: Found = []
    for scene in _middlebury_scenes(spec):
        left = scene / MIDDLEBURY_LEFT
        right = _require_file(scene / MIDDLEBURY_RIGHT, "--left (Middlebury scene)")
        found.append((scene.resolve().name, _ordinary_loader(left, right, spec.bit_depth)))
    return found


def _ordinary_loader(left: Path, right: Path, bit_depth: int | None) -> Callable[[str], StereoPair]:
    return lambda final: StereoPair(final, "ordinary", read_view_image(left, bit_depth)[None],
                                    read_view_image(right, bit_depth)[None], None)


def _discover_ordinary(spec: InputSpec) -> Found:
    return [(name, _ordinary_loader(left, right, spec.bit_depth)) for name, left, right in
            pair_files(spec.left, spec.right)]


def _has_angle(text: str | None) -> bool:
    return text is not None and "{angle" in text


INPUT_KINDS: tuple[InputKind, ...] = (
    InputKind("hdf5", lambda s: s.data is not None, _discover_hdf5),
    InputKind("mosaic", lambda s: s.mosaic is not None, _discover_mosaic),
    InputKind("angles", lambda s: _has_angle(s.left) or _has_angle(s.right), _discover_angles),
    InputKind("middlebury", lambda s: bool(_middlebury_scenes(s)), _discover_middlebury),
    InputKind("ordinary", lambda s: s.left is not None and s.right is not None, _discover_ordinary),
)


def _check_spec(spec: InputSpec) -> None:
    if spec.data is not None:
        if spec.left is not None or spec.right is not None:
            raise PolstereoError("--data cannot be combined with --left/--right")
        if spec.mosaic is not None:
            raise PolstereoError("--mosaic applies to --left/--right raw images, not to --data")
        return
    if spec.left is None:
        raise PolstereoError("no input: give --left and --right (or --data FILE.h5)")
    if spec.mosaic is not None and (_has_angle(spec.left) or _has_angle(spec.right)):
        raise PolstereoError("--mosaic takes one raw image per view, not an {angle} pattern")
    if spec.bit_depth is not None and not 1 <= spec.bit_depth <= 16:
        raise PolstereoError(f"--bit-depth must be between 1 and 16, got {spec.bit_depth}")


def safe_name(name: str) -> str:
    """A name usable as a directory name: runs of other characters than ``[A-Za-z0-9._-]`` become ``_``."""
    return re.sub(r"[^\w.\-]+", "_", name, flags=re.ASCII).strip("._") or "pair"


def resolve_inputs(spec: InputSpec) -> list[PairSource]:
    """Every pair that ``spec`` points at, named uniquely, not yet read.

    Raises :class:`PolstereoError` for missing files, unpaired images, bad patterns and
    option combinations that make no sense.
    """
    _check_spec(spec)
    kind = next((k for k in INPUT_KINDS if k.accepts(spec)), None)
    if kind is None:
        raise PolstereoError("--right is missing (only a Middlebury folder holding im0.png/im1.png, or a folder "
                             f"of such scene folders, may omit it): {spec.left}")
    sources, used = [], set()
    for proposed, loader in kind.discover(spec):
        name = base = safe_name(proposed)
        counter = 2
        while name in used:
            name, counter = f"{base}_{counter}", counter + 1
        used.add(name)
        sources.append(PairSource(name, kind.name, lambda loader=loader, name=name: loader(name).check()))
    return sources


__all__ = [
    "StereoPair", "InputSpec", "PairSource", "InputKind", "INPUT_KINDS", "AnglePattern", "resolve_inputs",
    "pair_files", "keyed_files", "read_view_image", "read_mosaic", "white_level", "to_unit_range", "safe_name",
]
