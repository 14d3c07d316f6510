"""Ordinary (non-polarized) stereo datasets with ground truth, for ``polstereo eval``.

Layouts, as their benchmarks ship them (detected from the folder):

* **Middlebury**: a scene folder, or a folder of scene folders, each with ``im0.png``,
  ``im1.png`` and ``disp0.pfm`` (infinite = invalid); ``mask0nocc.png`` (255 = valid,
  non-occluded) is used when present.
* **KITTI** (2012/2015): ``image_2/*_10.png`` (left), ``image_3/*_10.png`` (right) and
  16-bit ``disp_occ_0/*_10.png`` (value / 256, 0 = invalid; ``disp_noc_0`` or
  ``disp_occ`` also accepted).

The base model runs alone on these pairs (there is no polarization to correct), and
with no transparency masks only the ``all`` region is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from polstereo.errors import PolstereoError
from polstereo.evaluation.samples import Batch
from polstereo.io.images import read_disparity, read_image, read_view_image
from polstereo.io.layouts import (MIDDLEBURY_DISPARITY, MIDDLEBURY_LEFT, MIDDLEBURY_MASK, MIDDLEBURY_RIGHT,
                                  middlebury_scenes)

KITTI_DISPARITY_DIRS = ("disp_occ_0", "disp_noc_0", "disp_occ", "disp_noc")


def _middlebury(root: Path) -> list[tuple[str, Path, Path, Path, Path | None]]:
    out = []
    for scene in middlebury_scenes(root):
        if not (scene / MIDDLEBURY_DISPARITY).is_file():
            raise PolstereoError(f"{scene}: Middlebury scene without {MIDDLEBURY_DISPARITY} (ground truth needed "
                                 "for eval)")
        mask = scene / MIDDLEBURY_MASK
        out.append((scene.name, scene / MIDDLEBURY_LEFT, scene / MIDDLEBURY_RIGHT, scene / MIDDLEBURY_DISPARITY,
                    mask if mask.is_file() else None))
    return out


def _kitti(root: Path) -> list[tuple[str, Path, Path, Path, Path | None]]:
    disp_dir = next((root / d for d in KITTI_DISPARITY_DIRS if (root / d).is_dir()), None)
    if disp_dir is None:
        raise PolstereoError(f"{root}: KITTI layout without a disparity folder ({', '.join(KITTI_DISPARITY_DIRS)})")
    out = []
    for disp in sorted(disp_dir.glob("*.png")):
        left, right = root / "image_2" / disp.name, root / "image_3" / disp.name
        if not left.is_file() or not right.is_file():
            raise PolstereoError(f"{disp}: no matching image_2/{disp.name} and image_3/{disp.name}")
        out.append((disp.stem, left, right, disp, None))
    return out


class OrdinaryStereoFolder:
    """A Middlebury- or KITTI-style folder of rectified pairs with ground-truth disparity."""

    angles_deg = None

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise PolstereoError(f"{self.path}: not a folder of stereo pairs")
        if (self.path / "image_2").is_dir() and (self.path / "image_3").is_dir():
            self.layout, self.items = "kitti", _kitti(self.path)
        else:
            self.layout, self.items = "middlebury", _middlebury(self.path)
        if not self.items:
            raise PolstereoError(f"{self.path}: no Middlebury scenes (im0.png, im1.png, disp0.pfm) or KITTI pairs "
                                 "(image_2/, image_3/, disp_occ_0/) found")

    def __len__(self) -> int:
        return len(self.items)

    def batches(self, device: torch.device | str = "cpu", max_samples: int | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        rank, world = shard
        for i, (name, left_path, right_path, disp_path, mask_path) in enumerate(self.items[:max_samples]):
            if i % world != rank:
                continue
            left, right = read_view_image(left_path, None), read_view_image(right_path, None)
            if left.shape != right.shape:
                raise PolstereoError(f"{name}: left {left.shape[1:]} and right {right.shape[1:]} differ in size")
            disp = read_disparity(disp_path)
            if disp.shape != left.shape[1:]:
                raise PolstereoError(f"{disp_path}: disparity {disp.shape} does not match the image {left.shape[1:]}")
            valid = np.isfinite(disp) & (disp > 0 if self.layout == "kitti" else disp >= 0)
            if mask_path is not None:
                valid &= read_image(mask_path).reshape(disp.shape) == 255
            disp = np.where(valid, disp, np.nan).astype(np.float32)
            as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None].to(device)  # noqa: E731
            yield Batch(index=i, name=name, left=as_t(left), right=as_t(right), disparity=as_t(disp[None]),
                        valid=as_t(valid[None]), transparent=None, polarized=False)
