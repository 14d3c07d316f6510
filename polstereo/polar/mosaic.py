"""Division-of-focal-plane polarization sensors: raw mosaic <-> polarizer-angle stack.

A DoFP sensor puts a polarizer over every pixel, repeating a 2×2 super-pixel of four
angles; the colour variant adds a Bayer filter whose cells are whole super-pixels (a 4×4
period). Sony IMX250MZR / IMX250MYR (and their IMX253 siblings):

    row 0:  90°  45°          colour (IMX250MYR), one letter per 2×2 super-pixel:
    row 1: 135°   0°              R G
                                  G B

Layouts are data (:data:`LAYOUTS`); a custom 2×2 pattern of angles (degrees, row-major,
``((top-left, top-right), (bottom-left, bottom-right))``) works anywhere a layout name does.
Angles use polstereo's image convention (see :mod:`polstereo.polar.stokes`): 0 is
image-horizontal, counter-clockwise on screen is positive.

Stacks are numpy ``(4, C, H, W)`` with the four angles in ascending order (0/45/90/135 for
the Sony layouts; :func:`layout_angles_deg` tells) and C = 1 (mono) or 3 (RGB order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from polstereo.errors import PolstereoError


@dataclass(frozen=True)
class MosaicLayout:
    """A DoFP sensor layout.

    Attributes:
        name: how users refer to it.
        pattern: polarizer angle in degrees at (row % 2, col % 2) of each super-pixel.
        bayer: colour filter over whole 2×2 super-pixels, a key of :data:`BAYER_PATTERNS`;
            None for a mono sensor.
    """

    name: str
    pattern: tuple[tuple[float, float], tuple[float, float]]
    bayer: str | None = None


_SONY_PATTERN = ((90.0, 45.0), (135.0, 0.0))

LAYOUTS: dict[str, MosaicLayout] = {
    layout.name: layout
    for layout in (
        MosaicLayout("IMX250MZR", _SONY_PATTERN),
        MosaicLayout("IMX250MYR", _SONY_PATTERN, bayer="RGGB"),
        MosaicLayout("IMX253MZR", _SONY_PATTERN),
        MosaicLayout("IMX253MYR", _SONY_PATTERN, bayer="RGGB"),
    )
}

# Colour index (0 R, 1 G, 2 B) at (row % 2, col % 2) of the 2×2 Bayer cell.
BAYER_PATTERNS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "RGGB": ((0, 1), (1, 2)),
    "BGGR": ((2, 1), (1, 0)),
    "GRBG": ((1, 0), (2, 1)),
    "GBRG": ((1, 2), (0, 1)),
}

LayoutLike = Union[str, MosaicLayout, Sequence[Sequence[float]]]

DEMOSAIC_METHODS = ("bilinear", "superpixel")


# ---------------------------------------------------------------------------- layouts
def resolve_layout(layout: LayoutLike, color: bool | None = None) -> MosaicLayout:
    """The :class:`MosaicLayout` for a name, a layout, or a custom 2×2 angle pattern.

    ``color`` None keeps the layout's own colour filter; True puts an RGGB Bayer filter over
    the super-pixels of a mono pattern; False on a colour layout is an error (a colour
    sensor's raw image cannot be read as mono).
    """
    if isinstance(layout, MosaicLayout):
        resolved = layout
    elif isinstance(layout, str):
        resolved = LAYOUTS.get(layout.upper())
        if resolved is None:
            raise PolstereoError(
                f"unknown mosaic layout {layout!r}; known: {', '.join(LAYOUTS)} "
                "(or pass a 2x2 pattern of polarizer angles)")
    else:
        resolved = MosaicLayout("custom", _check_pattern(layout))
    if resolved.bayer is not None and resolved.bayer not in BAYER_PATTERNS:
        raise PolstereoError(
            f"unknown Bayer pattern {resolved.bayer!r}; known: {', '.join(BAYER_PATTERNS)}")
    _check_pattern(resolved.pattern)
    if color is None:
        return resolved
    if color and resolved.bayer is None:
        return MosaicLayout(resolved.name, resolved.pattern, bayer="RGGB")
    if not color and resolved.bayer is not None:
        raise PolstereoError(
            f"layout {resolved.name} is a colour sensor ({resolved.bayer} Bayer); use color=True "
            "or a mono layout")
    return resolved


def _check_pattern(pattern: Sequence[Sequence[float]]) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        rows = tuple(tuple(float(a) for a in row) for row in pattern)
    except (TypeError, ValueError):
        raise PolstereoError(f"a mosaic pattern must be 2x2 polarizer angles in degrees, got {pattern!r}")
    if len(rows) != 2 or any(len(row) != 2 for row in rows):
        raise PolstereoError(f"a mosaic pattern must be 2x2 polarizer angles in degrees, got {pattern!r}")
    flat = [a % 180.0 for row in rows for a in row]
    if len(set(flat)) != 4:
        raise PolstereoError(f"a mosaic pattern needs 4 different polarizer angles (mod 180), got {pattern!r}")
    return rows  # type: ignore[return-value]


def layout_angles_deg(layout: LayoutLike = "IMX250MZR") -> tuple[float, ...]:
    """The polarizer angles of a layout in the order :func:`demosaic` returns them (ascending)."""
    pattern = resolve_layout(layout).pattern
    return tuple(sorted(a for row in pattern for a in row))


def layout_period(layout: LayoutLike = "IMX250MZR", color: bool | None = None) -> int:
    """Side of the repeating tile in pixels: 2 for mono, 4 with a Bayer filter over super-pixels."""
    return 2 if resolve_layout(layout, color).bayer is None else 4


def _angle_index_tile(layout: MosaicLayout) -> np.ndarray:
    """``(2, 2)`` index into the ascending angle list at each super-pixel position."""
    order = sorted(a for row in layout.pattern for a in row)
    return np.array([[order.index(a) for a in row] for row in layout.pattern])


# ---------------------------------------------------------------------------- interpolation
def _tent_filter(x: np.ndarray) -> np.ndarray:
    """Zero-padded 3×3 tent [[¼, ½, ¼], [½, 1, ½], [¼, ½, ¼]] over the last two axes."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    rows = 0.5 * padded[..., :, :-2] + padded[..., :, 1:-1] + 0.5 * padded[..., :, 2:]
    return 0.5 * rows[..., :-2, :] + rows[..., 1:-1, :] + 0.5 * rows[..., 2:, :]


def _fill_lattices(raw: np.ndarray, tile: np.ndarray, channels: int) -> np.ndarray:
    """Bilinear fill of every channel of a periodic sampling pattern.

    ``raw (..., H, W)`` float with ``tile`` (P, P) naming the channel sampled at each
    (row % P, col % P); returns ``(..., channels, H, W)``. Sampled pixels keep their value;
    the others get the tent-weighted mean of the nearest samples of their channel, which is
    bilinear interpolation on square (period 2) and quincunx (Bayer green) lattices and
    renormalises itself at the image border.
    """
    height, width = raw.shape[-2:]
    period = tile.shape[0]
    channel_map = np.tile(tile, (height // period, width // period))
    masks = (channel_map == np.arange(channels)[:, None, None]).astype(raw.dtype)  # (K, H, W)
    samples = raw[..., None, :, :] * masks
    filled = _tent_filter(samples) / _tent_filter(masks)
    return np.where(masks > 0, samples, filled)


def _bayer_tile(bayer: str) -> np.ndarray:
    return np.array(BAYER_PATTERNS[bayer])


def _bilinear(raw: np.ndarray, layout: MosaicLayout) -> np.ndarray:
    angle_tile = _angle_index_tile(layout)
    if layout.bayer is None:
        return _fill_lattices(raw, angle_tile, 4)[:, None]  # (4, 1, H, W)
    # Colour first, per polarizer sub-lattice (each one is a plain half-size Bayer image),
    # then polarization per colour plane: the order polanalyser / OpenCV use.
    colour_planes = np.empty((3,) + raw.shape, dtype=raw.dtype)
    for dy in range(2):
        for dx in range(2):
            colour_planes[:, dy::2, dx::2] = _fill_lattices(raw[dy::2, dx::2], _bayer_tile(layout.bayer), 3)
    return np.moveaxis(_fill_lattices(colour_planes, angle_tile, 4), 1, 0)  # (4, 3, H, W)


def _superpixel(raw: np.ndarray, layout: MosaicLayout) -> np.ndarray:
    angle_tile = _angle_index_tile(layout)
    half = np.empty((4,) + (raw.shape[0] // 2, raw.shape[1] // 2), dtype=raw.dtype)
    for dy in range(2):
        for dx in range(2):
            half[angle_tile[dy, dx]] = raw[dy::2, dx::2]
    if layout.bayer is None:
        return half[:, None]
    return _fill_lattices(half, _bayer_tile(layout.bayer), 3)  # (4, 3, H/2, W/2)


_METHODS = {"bilinear": _bilinear, "superpixel": _superpixel}


# ---------------------------------------------------------------------------- public API
def demosaic(raw: np.ndarray, layout: LayoutLike = "IMX250MZR", color: bool | None = None,
             method: str = "bilinear") -> np.ndarray:
    """Raw DoFP sensor image -> polarizer-angle stack.

    Args:
        raw: ``(H, W)`` sensor image, any numeric dtype; H and W multiples of the layout
            period (2 mono, 4 colour).
        layout: a name in :data:`LAYOUTS`, a :class:`MosaicLayout`, or a 2×2 angle pattern.
        color: None = the layout's own; True = RGGB over super-pixels of a mono pattern.
        method: ``"bilinear"`` (full resolution; the interpolation of OpenCV's Bayer
            demosaicing that ``polanalyser.demosaicing`` uses, with borders renormalised
            instead of copied) or ``"superpixel"`` (each 2×2 super-pixel gives one output
            pixel: half resolution, no interpolation across polarizers).

    Returns:
        ``(4, C, H, W)`` (``(4, C, H/2, W/2)`` for superpixel) float32 (float64 for float64
        input) in the raw's units, angles in :func:`layout_angles_deg` order (0/45/90/135 for
        the Sony layouts), C = 1 mono or 3 (R, G, B). Bilinear keeps every raw pixel's value
        at its own angle (and colour): ``mosaic(demosaic(raw)) == raw``.
    """
    resolved = resolve_layout(layout, color)
    if method not in _METHODS:
        raise PolstereoError(f"unknown demosaic method {method!r}; choose one of {', '.join(DEMOSAIC_METHODS)}")
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise PolstereoError(f"a raw sensor image must be 2-D (H, W), got shape {raw.shape}")
    _check_size(raw.shape, resolved)
    as_float = raw.astype(np.float64 if raw.dtype == np.float64 else np.float32)
    return _METHODS[method](as_float, resolved)


def mosaic(stack: np.ndarray, layout: LayoutLike = "IMX250MZR", color: bool | None = None) -> np.ndarray:
    """Polarizer-angle stack -> the raw image the sensor would record (inverse sampling).

    Args:
        stack: ``(4, C, H, W)``, angles in :func:`layout_angles_deg` order, C = 1 for a mono
            layout and 3 (R, G, B) for a colour one; H, W multiples of the layout period.
        layout, color: as in :func:`demosaic` (None with C = 3 and a mono layout means colour).

    Returns:
        ``(H, W)`` of the stack's dtype: each pixel takes its own angle's (and colour's) value.
    """
    stack = np.asarray(stack)
    if stack.ndim != 4 or stack.shape[0] != 4 or stack.shape[1] not in (1, 3):
        raise PolstereoError(f"an angle stack must be (4, C, H, W) with C = 1 or 3, got shape {stack.shape}")
    if color is None and stack.shape[1] == 3:
        color = True
    resolved = resolve_layout(layout, color)
    channels = 1 if resolved.bayer is None else 3
    if stack.shape[1] != channels:
        raise PolstereoError(
            f"layout {resolved.name} {'mono' if channels == 1 else 'colour'} needs C = {channels}, "
            f"got shape {stack.shape}")
    height, width = stack.shape[-2:]
    _check_size((height, width), resolved)
    angle_map = np.tile(_angle_index_tile(resolved), (height // 2, width // 2))
    if resolved.bayer is None:
        colour_map = np.zeros((height, width), dtype=int)
    else:
        # Each Bayer cell covers a whole super-pixel: repeat every colour entry 2×2.
        super_tile = np.kron(_bayer_tile(resolved.bayer), np.ones((2, 2), dtype=int))
        colour_map = np.tile(super_tile, (height // 4, width // 4))
    rows, cols = np.indices((height, width))
    return stack[angle_map, colour_map, rows, cols]


def _check_size(shape: tuple[int, ...], layout: MosaicLayout) -> None:
    period = 2 if layout.bayer is None else 4
    height, width = shape[-2:]
    if height % period or width % period or height == 0 or width == 0:
        raise PolstereoError(
            f"raw size {height}x{width} (HxW) is not a multiple of the {period}x{period} "
            f"tile of layout {layout.name}; crop it to {height - height % period}x{width - width % period}")
