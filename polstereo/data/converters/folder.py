"""``folder`` layout: one image file per view and polarizer angle.

::

    SRC/<sample>/left_0.png  left_45.png  left_90.png  left_135.png
                 right_0.png ... right_135.png
                 disparity.pfm | disparity.npy | disparity.exr | disparity.png (16-bit, --disp-scale)
                 mask.png            transparency, nonzero = transparent
                 [occlusion.png] [valid.png] [meta.json]

Angle images may be 8- or 16-bit PNG/TIFF (kept as stored), or float (PFM, EXR, NPY,
float TIFF); greyscale or RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polstereo.data.converters.base import (
    GROUND_TRUTH_ROLES, SIZE_MISMATCH, BAD_VALUES, Converter, FileRole, SkipSample, image_to_chw,
)
from polstereo.io.images import read_image


class FolderConverter(Converter):
    name = "folder"
    summary = "per-sample directories of angle images (left_{angle}.png ...) plus ground truth"
    roles = {
        "left": FileRole("left_{angle}.*", True, "left view at each polarizer angle ({angle} = 0, 45, 90, 135)"),
        "right": FileRole("right_{angle}.*", True, "right view at each polarizer angle"),
        **GROUND_TRUTH_ROLES,
    }

    def _view(self, sample_dir: Path, view: str) -> np.ndarray:
        """``(A, C, H, W)`` from one file per angle, all of one size and dtype."""
        images = []
        for angle in self.angles_deg():
            path = self.find(view, sample_dir, angle)
            images.append((path, read_image(path)))
        first_path, first = images[0]
        for path, image in images[1:]:
            if image.shape != first.shape:
                raise SkipSample(SIZE_MISMATCH, f"{path.name} has shape {image.shape}, "
                                                f"{first_path.name} has {first.shape}")
            if image.dtype != first.dtype:
                raise SkipSample(BAD_VALUES, f"{path.name} is {image.dtype}, {first_path.name} is {first.dtype}")
        stack = np.stack([image_to_chw(image) for _, image in images])
        if stack.dtype.kind == "f":
            return stack.astype(np.float32)
        if stack.dtype not in (np.uint8, np.uint16):
            raise SkipSample(BAD_VALUES, f"{first_path.name}: images must be uint8, uint16 or float, "
                                         f"got {stack.dtype}")
        return stack

    def load_views(self, sample_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        return self._view(sample_dir, "left"), self._view(sample_dir, "right")

    def source_color(self, sample_dir: Path) -> str:
        image = read_image(self.find("left", sample_dir, self.angles_deg()[0]))
        return "rgb" if image.ndim == 3 and image.shape[2] >= 3 else "mono"
