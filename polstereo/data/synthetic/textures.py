"""Surface textures: procedural patterns (value noise, stripes, checker, blobs) and photographs.

A texture maps points in a surface's own frame (metres, ``(3, N)``) to a pattern
value in [0, 1], then to an albedo between two colours. Every pattern is smooth and
band-limited: an octave or pattern whose features would be smaller than ~2 pixels at
the point's distance fades to its mean, so left and right views see the same texture
without aliasing (the pixel footprint used depends only on depth and surface slant,
which both views share). Photographs (:class:`PhotoTexture`) are band-limited the same
way, by sampling a mip pyramid at the level the pixel footprint asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import numpy as np

# Fixed random lattices (periodic, padded by one so a cell's far corners need no wrap):
# textures differ by scale, rotation and offset, not by table.
_PERIOD2, _PERIOD3 = 256, 64


def _padded_lattice(rng: np.random.Generator, period: int, dims: int) -> np.ndarray:
    grid = rng.random((period,) * dims).astype(np.float32)
    return np.pad(grid, [(0, 1)] * dims, mode="wrap").ravel()


_TABLE_RNG = np.random.default_rng(20240607)
_LATTICE2 = _padded_lattice(_TABLE_RNG, _PERIOD2, 2)
_LATTICE3 = _padded_lattice(_TABLE_RNG, _PERIOD3, 3)

PATTERNS = ("noise", "stripes", "checker", "blobs")
OCTAVES = 2
_FULL_PX, _GONE_PX = 4.0, 2.0  # feature size (pixels) above which a pattern is kept whole / below which it fades out


@dataclass(frozen=True)
class Texture:
    """A procedural albedo pattern.

    Attributes:
        pattern: one of :data:`PATTERNS`.
        feature_m: size of the coarsest feature (half a stripe period, a checker square,
            a noise lattice cell), metres.
        rotation: ``(3, 3)`` orientation of the pattern in the surface frame.
        offset: ``(3,)`` pattern shift, in feature units.
        color0, color1: ``(C,)`` albedo at pattern values 0 and 1.
        sharpness: edge steepness of stripes, checker and blobs (1 soft .. 4 crisp).
        detail: weight of fine value-noise detail mixed into every pattern, in [0, 1].
        planar: the surface is a plane (local z = 0): patterns use two dimensions.
    """

    pattern: str
    feature_m: float
    rotation: np.ndarray
    offset: np.ndarray
    color0: np.ndarray
    color1: np.ndarray
    sharpness: float = 2.0
    detail: float = 0.3
    planar: bool = False

    def albedo(self, local: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
        """``(C, N)`` albedo at surface points ``local`` ``(3, N)`` with pixel footprints ``(N,)`` in metres."""
        t = pattern_value(self, local, footprint_m)
        c0 = self.color0[:, None].astype(np.float32)
        c1 = self.color1[:, None].astype(np.float32)
        return c0 + (c1 - c0) * t[None]


def _fade(feature_m: float, footprint_m: np.ndarray) -> np.ndarray:
    """Weight in [0, 1] of a pattern with features of ``feature_m``: 1 above 4 px, 0 below 2 px."""
    px = feature_m / footprint_m
    return np.clip((px - _GONE_PX) / (_FULL_PX - _GONE_PX), 0.0, 1.0)


def value_noise(p: np.ndarray, planar: bool) -> np.ndarray:
    """Smooth lattice noise in [0, 1] at points ``p`` ``(3, N)`` (lattice units); z ignored if ``planar``.

    Random values on an integer lattice (period 256 in 2D, 64 in 3D), interpolated with
    a smoothstep so the pattern has no creases.
    """
    dims = 2 if planar else 3
    period = _PERIOD2 if planar else _PERIOD3
    table = _LATTICE2 if planar else _LATTICE3
    stride = period + 1
    corner = np.floor(p[:dims])
    w = p[:dims] - corner
    w = w * w * (3.0 - 2.0 * w)
    cell = corner.astype(np.intp) & (period - 1)
    base = cell[0] + stride * cell[1] if planar else cell[0] + stride * (cell[1] + stride * cell[2])

    def lerp(a, b, t):
        return a + t * (b - a)

    def plane(offset: int) -> np.ndarray:  # bilinear in x, y on one lattice layer
        b = base + offset if offset else base
        return lerp(lerp(table[b], table[b + 1], w[0]), lerp(table[b + stride], table[b + stride + 1], w[0]), w[1])

    if planar:
        return plane(0)
    return lerp(plane(0), plane(stride * stride), w[2])


def fbm(p: np.ndarray, feature_m: float, footprint_m: np.ndarray, planar: bool, octaves: int = OCTAVES) -> np.ndarray:
    """Fractal value noise in [0, 1]: ``octaves`` halvings of ``feature_m``, each band-limited."""
    total = np.zeros(p.shape[1:], dtype=np.float32)
    norm = 0.0
    for k in range(octaves):
        scale = 2.0 ** k
        amp = 0.5 ** k
        # A per-octave shift keeps lattice corners of different octaves from lining up.
        q = p * np.float32(scale / feature_m) + np.float32(17.31 * k)
        total += amp * (0.5 + _fade(feature_m / scale, footprint_m) * (value_noise(q, planar) - 0.5))
        norm += amp
    return total / np.float32(norm)


def _shaped(s: np.ndarray, sharpness: float) -> np.ndarray:
    """Map a wave in [-1, 1] to [0, 1] with steeper edges as ``sharpness`` grows."""
    return 0.5 + 0.5 * np.tanh(sharpness * s) / math.tanh(sharpness)


def pattern_value(tex: Texture, local: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
    """The pattern value in [0, 1] of ``tex`` at ``local`` points ``(3, N)``."""
    p = tex.rotation.astype(np.float32) @ local.astype(np.float32)
    p = p + (tex.offset[:, None] * tex.feature_m).astype(np.float32)
    f = tex.feature_m
    if tex.pattern == "noise":
        base = fbm(p, f, footprint_m, tex.planar)
    elif tex.pattern == "stripes":
        base = 0.5 + _fade(f, footprint_m) * (_shaped(np.sin(np.pi / f * p[0]), tex.sharpness) - 0.5)
    elif tex.pattern == "checker":
        # On solids the rotated 2D checker is extruded along the pattern's z: still smooth.
        wave = np.sin(np.pi / f * p[0]) * np.sin(np.pi / f * p[1])
        base = 0.5 + _fade(f, footprint_m) * (_shaped(wave, tex.sharpness) - 0.5)
    elif tex.pattern == "blobs":
        noise = fbm(p, f, footprint_m, tex.planar)
        base = _shaped(np.clip(2.5 * (noise - 0.5), -1.0, 1.0), tex.sharpness)
    else:
        raise ValueError(f"unknown texture pattern {tex.pattern!r}; use one of {PATTERNS}")
    if tex.detail > 0:
        detail = fbm(p + np.float32(7.7 * f), f / 4.0, footprint_m, tex.planar, octaves=1)
        base = (1.0 - tex.detail) * base + tex.detail * detail
    return base.astype(np.float32)


# ---------------------------------------------------------------------------- photographs
_TRIPLANAR_SHARPNESS = 8.0  # exponent of the triplanar blend weights: faces show one projection
# the mip level sampled has photo pixels ~3 pixel footprints wide: what is kept has periods of
# about 8 px or more, as the procedural patterns fade features under 4 px
_PHOTO_FOOTPRINTS = 3.0


@dataclass(frozen=True)
class PhotoTexture:
    """A photograph mapped onto a surface in the surface's own frame (metres).

    Planar surfaces (``extent`` None, local z = 0) use (x, y) directly; solids use a
    triplanar mapping: the photo projected along each local axis, blended with weights
    (|p_i| / extent_i)^8 normalised, so a box face or an ellipsoid's cap shows one
    projection. Surface coordinates are rotated by ``angle``, divided by ``texel_m``
    (metres per photo pixel), shifted by ``offset`` and mirrored into the ``crop`` window
    (so the photo repeats without seams), and its values are stretched by ``stretch``
    (value ← (value − low)/span, clipped to [0, 1]) so a crop of a dull part of a photo
    still has contrast. The value is band-limited by the pixel footprint: sampled from the
    mip level whose pixels are about three footprints wide, linearly between the two
    nearest levels (trilinear), as the procedural patterns fade features under 4 px; the
    footprint is the left camera's in both views, so both see the same values.

    Attributes:
        levels: the photo's mip pyramid (:class:`~polstereo.data.synthetic.photos.Photo`),
            ``(H, W, K)`` float32 in [0, 1].
        name: the photo's name.
        crop: (x0, y0, width, height) of the window used, level-0 pixels.
        texel_m: metres of surface per level-0 photo pixel.
        angle: in-plane rotation, radians.
        offset: ``(2,)`` shift in photo pixels.
        stretch: (low, span) of the crop's values mapped to [0, 1].
        color0, color1: ``(C,)`` albedo at photo values 0 and 1 (per channel: an RGB photo
            in RGB mode is used as colour).
        extent: ``(3,)`` semi-axes of a solid (triplanar mapping), None for a plane.
    """

    levels: tuple[np.ndarray, ...] = field(repr=False)
    name: str
    crop: tuple[float, float, float, float]
    texel_m: float
    angle: float
    offset: np.ndarray
    stretch: tuple[float, float]
    color0: np.ndarray
    color1: np.ndarray
    extent: np.ndarray | None = None

    def albedo(self, local: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
        """``(C, N)`` albedo at surface points ``local`` ``(3, N)`` with pixel footprints ``(N,)`` in metres."""
        t = self.value(local, footprint_m)
        c0 = self.color0[:, None].astype(np.float32)
        c1 = self.color1[:, None].astype(np.float32)
        return c0 + (c1 - c0) * t

    def value(self, local: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
        """``(K, N)`` photo values in [0, 1] at ``local`` ``(3, N)`` points."""
        local = local.astype(np.float32, copy=False)
        lod = np.log2(np.maximum(_PHOTO_FOOTPRINTS * footprint_m / self.texel_m, 1e-12)).astype(np.float32)
        low, span = (np.float32(x) for x in self.stretch)
        if self.extent is None:
            return np.clip((self._sample(local[0], local[1], lod) - low) / span, 0.0, 1.0)
        weights = (np.abs(local) / self.extent[:, None].astype(np.float32)) ** _TRIPLANAR_SHARPNESS
        weights = weights / np.maximum(weights.sum(axis=0), 1e-20)
        total = np.zeros((self.levels[0].shape[2], local.shape[1]), dtype=np.float32)
        for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
            # each projection starts elsewhere in the crop, so opposite faces differ
            total += weights[axis] * self._sample(local[a], local[b], lod, shift=0.37 * axis)
        return np.clip((total - low) / span, 0.0, 1.0)

    def _sample(self, a: np.ndarray, b: np.ndarray, lod: np.ndarray, shift: float = 0.0) -> np.ndarray:
        """Trilinear sample at plane coordinates (a, b) metres, mip level ``lod`` (fractional)."""
        x0, y0, w, h = self.crop
        c, s = math.cos(self.angle), math.sin(self.angle)
        inv = 1.0 / self.texel_m
        u = (c * a - s * b) * np.float32(inv) + np.float32(self.offset[0] + shift * w)
        v = (s * a + c * b) * np.float32(inv) + np.float32(self.offset[1] + shift * h)
        u = x0 + _mirror(u, w)
        v = y0 + _mirror(v, h)
        top = len(self.levels) - 1
        lod = np.clip(lod, 0.0, float(top))
        base = np.minimum(np.floor(lod).astype(np.intp), max(top - 1, 0))
        frac = np.clip(lod - base, 0.0, 1.0)
        out = np.empty((self.levels[0].shape[2], u.shape[0]), dtype=np.float32)
        for level in np.unique(base).tolist():
            sel = np.flatnonzero(base == level)
            lo = _bilinear(self.levels[level], u[sel], v[sel], level)
            if level + 1 <= top:
                hi = _bilinear(self.levels[level + 1], u[sel], v[sel], level + 1)
                lo = lo + frac[sel] * (hi - lo)
            out[:, sel] = lo
        return out


def _mirror(x: np.ndarray, period: float) -> np.ndarray:
    """Fold ``x`` into [0, period] by mirroring (a triangle wave): continuous, no seams."""
    m = np.mod(x, np.float32(2.0 * period))
    return np.float32(period) - np.abs(m - np.float32(period))


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray, level: int) -> np.ndarray:
    """``(K, N)`` bilinear samples of mip ``level`` ``image`` ``(H, W, K)`` at level-0 pixel coordinates."""
    h, w, k = image.shape
    scale = np.float32(0.5 ** level)  # pyrDown keeps level-l pixel j at level-0 pixel 2^l·j
    x = np.clip(u * scale, 0.0, w - 1.0)
    y = np.clip(v * scale, 0.0, h - 1.0)
    ix = np.minimum(x.astype(np.intp), w - 2)
    iy = np.minimum(y.astype(np.intp), h - 2)
    fx = (x - ix)[:, None]
    fy = (y - iy)[:, None]
    flat = image.reshape(-1, k)
    i = iy * w + ix
    top = flat[i] + fx * (flat[i + 1] - flat[i])
    bottom = flat[i + w] + fx * (flat[i + w + 1] - flat[i + w])
    return (top + fy * (bottom - top)).T
