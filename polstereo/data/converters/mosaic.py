"""``mosaic`` layout: raw division-of-focal-plane sensor images, one per view.

::

    SRC/<sample>/left_raw.png  right_raw.png    8-, 12- (in 16-bit) or 16-bit, single channel
                 disparity.*  mask.png  [occlusion.png] [valid.png] [meta.json]

Each raw image is demosaiced to full resolution (bilinear, per polarizer sub-lattice)
with :func:`polstereo.polar.mosaic.demosaic` for ``--mosaic-layout`` (a sensor name such
as IMX250MZR / IMX250MYR, or four angles of the 2x2 super-pixel, row-major). Integer
raws stay integer: interpolated values are rounded back to the raw's dtype, so
``--bit-depth 12`` still describes the data. The angle order is the layout's
(ascending: 0/45/90/135 for the Sony sensors); ``--angles`` does not apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polstereo.data.converters.base import BAD_VALUES, GROUND_TRUTH_ROLES, Converter, FileRole, SkipSample
from polstereo.errors import PolstereoError
from polstereo.io.images import read_image
from polstereo.polar.mosaic import LayoutLike, demosaic, layout_angles_deg, resolve_layout


def parse_layout(text: str) -> LayoutLike:
    """A layout name, or ``"90,45,135,0"``: the 2x2 super-pixel's angles, row-major."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) == 4:
        try:
            angles = [float(p) for p in parts]
        except ValueError:
            return text
        return (tuple(angles[:2]), tuple(angles[2:]))
    return text


class MosaicConverter(Converter):
    name = "mosaic"
    summary = "raw polarization-sensor mosaics (IMX250MZR-style 2x2 super-pixels), one per view"
    roles = {
        "left": FileRole("left_raw.*", True, "left raw sensor image (single channel)"),
        "right": FileRole("right_raw.*", True, "right raw sensor image"),
        **GROUND_TRUTH_ROLES,
    }

    def __init__(self, options=None):
        super().__init__(options)
        self.layout = resolve_layout(parse_layout(self.options.mosaic_layout))  # PolstereoError if unknown

    def angles_deg(self) -> tuple[float, ...]:
        return layout_angles_deg(self.layout)

    def source_color(self, sample_dir: Path) -> str:
        return "mono" if self.layout.bayer is None else "rgb"

    def _view(self, sample_dir: Path, view: str) -> np.ndarray:
        path = self.find(view, sample_dir)
        raw = read_image(path)
        if raw.ndim != 2:
            raise SkipSample(BAD_VALUES, f"{path.name}: a raw mosaic is single-channel, got shape {raw.shape}")
        try:
            stack = demosaic(raw, self.layout)
        except PolstereoError as err:
            raise SkipSample(BAD_VALUES, f"{path.name}: {err}") from None
        if raw.dtype.kind == "u":
            return np.clip(np.round(stack), 0, np.iinfo(raw.dtype).max).astype(raw.dtype)
        return stack.astype(np.float32)

    def load_views(self, sample_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        return self._view(sample_dir, "left"), self._view(sample_dir, "right")
