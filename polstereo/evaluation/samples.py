"""Full-resolution samples of a polstereo HDF5 file as tensors, one at a time.

What every measuring loop iterates over: :mod:`polstereo.evaluation.evaluate`,
:mod:`polstereo.evaluation.feasibility`, the evidence probes
(:mod:`polstereo.evaluation.evidence`, :mod:`polstereo.evaluation.shape_evidence`) and the
ordinary-pair folders of :mod:`polstereo.evaluation.ordinary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from polstereo.data.h5.reader import H5Reader


@dataclass
class Batch:
    """One full-resolution sample as tensors on ``device`` (batch of 1)."""

    index: int
    name: str
    left: torch.Tensor         # (1, A, C, H, W)
    right: torch.Tensor
    disparity: torch.Tensor    # (1, 1, H, W), NaN where invalid
    valid: torch.Tensor        # (1, 1, H, W) bool
    transparent: torch.Tensor | None
    polarized: bool = True     # False: ordinary pair, left/right are (1, C, H, W) images
    glass_kinds: tuple[str, ...] | None = None  # the sample's record (docs/format.md); None unknown
    lighting: str | None = None


def iterate_samples(reader: H5Reader, device: torch.device | str = "cpu", max_samples: int | None = None,
                    require_disparity: bool = True, shard: tuple[int, int] = (0, 1),
                    exclude_occluded: bool = False) -> Iterator[Batch]:
    """Full-resolution samples of ``reader`` (labeled ones only when ``require_disparity``).

    ``shard=(rank, world)`` yields every ``world``-th of them, starting at ``rank``.
    ``exclude_occluded``: pixels the sample's occlusion mask marks (left pixel not seen by
    the right camera) are not ``valid`` (KITTI's "noc" pixels); samples without the mask
    keep all their pixels.
    """
    count = 0
    rank, world = shard
    for i in range(len(reader)):
        if max_samples is not None and count >= max_samples:
            return
        if require_disparity and not reader.has(i, "disparity"):
            continue
        count += 1
        if (count - 1) % world != rank:
            continue
        s = reader.read(i)
        h, w = s.shape
        disp = s.disparity if s.disparity is not None else np.full((h, w), np.nan, np.float32)
        valid = s.valid_mask() if s.disparity is not None else np.zeros((h, w), bool)
        if exclude_occluded and s.occlusion is not None:
            valid = valid & ~s.occlusion.astype(bool)
        disp = np.where(valid, disp, np.nan).astype(np.float32)
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None].to(device)  # noqa: E731
        yield Batch(index=i, name=s.name, left=as_t(s.left), right=as_t(s.right), disparity=as_t(disp[None]),
                    valid=as_t(valid[None]), transparent=None if s.transparent is None else as_t(s.transparent[None]),
                    glass_kinds=s.glass_kinds, lighting=s.lighting)
