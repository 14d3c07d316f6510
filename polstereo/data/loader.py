"""Training data: random crops with polarization-safe augmentation, dataset mixtures.

Determinism is by construction: the sample drawn for slot ``k`` of global step ``t``
and every random choice of its augmentation derive from ``(seed, t, k)`` only. So a
run resumed at step ``t`` sees exactly the data an uninterrupted run would have seen,
whatever the number of worker processes, and under DistributedDataParallel each rank
takes its own slots of the same global batch.

Augmentation respects the polarization physics (DESIGN.md section 3): photometric
changes are linear and identical across the angle images of a view (a gain on all of
them, an offset that changes S0 only), and a vertical flip mirrors angles
(AoLP -> pi - AoLP; the 45 and 135 degree images swap). A horizontal flip would also
swap the views and needs the right view's disparity, which the format does not store,
so it is not offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from polstereo.data.h5.reader import open_dataset
from polstereo.errors import PolstereoError
from polstereo.polar.stokes import hflip_angle_permutation


@dataclass(frozen=True)
class AugmentConfig:
    """Random crop, scale and photometric augmentation of one training pair.

    Attributes:
        crop_size: output ``(height, width)``; ``None`` keeps the full image (no augmentation
            of geometry), for validation.
        scale_range: image scale factor drawn log-uniformly; disparities scale with it.
        gain_range: multiplicative gain on every angle image of a view.
        offset_range: additive offset on every angle image of a view (changes S0 only).
        asymmetric_prob: chance that the right view gets its own gain and offset
            (exposure differences between two cameras).
        vflip_prob: chance of a vertical flip (angles mirrored).
        max_disparity: ground truth above it is marked invalid (``None``: no limit).
    """

    crop_size: tuple[int, int] | None = (256, 320)
    scale_range: tuple[float, float] = (1.0, 1.0)
    gain_range: tuple[float, float] = (0.8, 1.25)
    offset_range: tuple[float, float] = (-0.03, 0.03)
    asymmetric_prob: float = 0.2
    vflip_prob: float = 0.0
    max_disparity: float | None = None

    @classmethod
    def evaluation(cls) -> "AugmentConfig":
        """Full images, no randomness."""
        return cls(crop_size=None, gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), asymmetric_prob=0.0)


def item_rng(seed: int, step: int, slot: int) -> np.random.Generator:
    """The random generator of slot ``slot`` of global step ``step``."""
    return np.random.default_rng([seed, step, slot])


def _resize_stack(stack: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(A, C, H, W)`` stack; linear, so Stokes relations survive."""
    a, c, h, w = stack.shape
    flat = stack.reshape(a * c, h, w).transpose(1, 2, 0)
    interp = cv2.INTER_AREA if size_hw[0] < h else cv2.INTER_LINEAR
    out = cv2.resize(flat, (size_hw[1], size_hw[0]), interpolation=interp)
    return out.reshape(size_hw[0], size_hw[1], a * c).transpose(2, 0, 1).reshape(a, c, *size_hw)


def _resize_nearest(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    # nearest keeps invalid (NaN) disparities and mask edges from bleeding
    return cv2.resize(arr.astype(np.float32), (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)


def _pad_to(arr: np.ndarray, size_hw: tuple[int, int], value: float) -> np.ndarray:
    pad_h, pad_w = size_hw[0] - arr.shape[-2], size_hw[1] - arr.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return arr
    widths = [(0, 0)] * (arr.ndim - 2) + [(0, max(pad_h, 0)), (0, max(pad_w, 0))]
    return np.pad(arr, widths, constant_values=value)


class StereoCropDataset(Dataset):
    """Random augmented crops from one polstereo HDF5 file, or from the shards a glob names
    (``data/train-*.h5``: their samples concatenated in sorted order, one dataset).

    Items are addressed by ``(sample_index, step, slot)`` (see :class:`MixturePlan`);
    an ``int`` index means ``(index, 0, 0)``. Each item is a dict of tensors:
    ``left``/``right`` ``(A, C, h, w)`` in the stored integer type (uint8, or int32 for
    uint16 data; float32 stays float), ``photometric`` ``(5,)`` = white level and the
    left/right gain and offset to apply, ``disparity`` ``(1, h, w)`` (0 where invalid),
    ``valid``, ``transparent`` ``(1, h, w)`` bool, ``has_disparity``, ``index``.

    Images cross the worker-process boundary as stored integers (a quarter of the bytes
    of float32) and :func:`to_device` scales and augments them on the training device;
    every random choice is still drawn here, from the item's own generator.
    """

    def __init__(self, path, augment: AugmentConfig = AugmentConfig(), seed: int = 0):
        self.reader = open_dataset(path)  # a glob of shards is one dataset
        if len(self.reader) == 0:
            raise PolstereoError(f"{path}: holds no samples")
        self.augment = augment
        self.seed = seed
        self.angles_deg = self.reader.angles_deg
        self.mirror = list(hflip_angle_permutation(self.angles_deg))

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, step, slot = (int(key), 0, 0) if np.isscalar(key) else (int(k) for k in key)
        rng = item_rng(self.seed, step, slot)
        aug = self.augment
        h, w = self.reader.shapes[index]
        crop_hw = aug.crop_size or (h, w)
        scale = math.exp(rng.uniform(*np.log(aug.scale_range))) if aug.crop_size else 1.0
        # region of the stored image that becomes the crop after scaling
        region_h = min(h, max(1, round(crop_hw[0] / scale)))
        region_w = min(w, max(1, round(crop_hw[1] / scale)))
        y0 = int(rng.integers(0, h - region_h + 1))
        x0 = int(rng.integers(0, w - region_w + 1))
        s = self.reader.read(index, crop=(y0, x0, region_h, region_w), normalize=False,
                             fields=("disparity", "transparent", "valid"))
        left, right = s.left, s.right
        if left.dtype.kind == "f" and not (np.isfinite(left).all() and np.isfinite(right).all()):
            raise PolstereoError(f"{self.reader.path}: sample {index} ({s.name}) has NaN or infinite values in its "
                                 "images; the data is broken, not the model ('polstereo inspect' lists every such "
                                 "sample)")
        disp = s.disparity if s.disparity is not None else np.full((region_h, region_w), np.nan, np.float32)
        valid = s.valid_mask() if s.disparity is not None else np.zeros((region_h, region_w), bool)
        transparent = s.transparent if s.transparent is not None else np.zeros((region_h, region_w), bool)
        if aug.crop_size and (region_h, region_w) != tuple(crop_hw):
            out_hw = (min(crop_hw[0], round(region_h * scale)), min(crop_hw[1], round(region_w * scale)))
            sx = out_hw[1] / region_w
            left, right = _resize_stack(left, out_hw), _resize_stack(right, out_hw)
            disp = _resize_nearest(disp, out_hw) * sx
            valid = _resize_nearest(valid, out_hw) > 0.5
            transparent = _resize_nearest(transparent, out_hw) > 0.5
        photometric = self._photometric(rng, float(s.white_level))
        if aug.vflip_prob and rng.random() < aug.vflip_prob:
            left, right = left[self.mirror, :, ::-1], right[self.mirror, :, ::-1]
            disp, valid, transparent = disp[::-1], valid[::-1], transparent[::-1]
        if aug.max_disparity is not None:
            valid = valid & (np.nan_to_num(disp, nan=np.inf) <= aug.max_disparity)
        # images smaller than the crop: pad, and the padding is invalid (and not image: `inside`)
        inside = _pad_to(np.ones(valid.shape, bool), crop_hw, False)
        left, right = _pad_to(left, crop_hw, 0.0), _pad_to(right, crop_hw, 0.0)
        valid = _pad_to(valid, crop_hw, False)
        disp = np.where(valid, np.nan_to_num(_pad_to(disp, crop_hw, 0.0), nan=0.0), 0.0)
        transparent = _pad_to(transparent, crop_hw, False) & valid
        return {
            "left": torch.from_numpy(_transportable(left)),
            "right": torch.from_numpy(_transportable(right)),
            "photometric": torch.tensor(photometric, dtype=torch.float32),
            "disparity": torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32))[None],
            "valid": torch.from_numpy(np.ascontiguousarray(valid))[None],
            "transparent": torch.from_numpy(np.ascontiguousarray(transparent))[None],
            "inside": torch.from_numpy(inside)[None],
            "has_disparity": torch.tensor(s.disparity is not None),
            "index": torch.tensor(index),
        }

    def _photometric(self, rng: np.random.Generator, white_level: float) -> list[float]:
        """``[white, gain_l, offset_l, gain_r, offset_r]``: one gain and offset per view,
        identical across its angle images (linear in intensity; :func:`to_device` applies them)."""
        aug = self.augment
        gain, offset = rng.uniform(*aug.gain_range), rng.uniform(*aug.offset_range)
        gain_r, offset_r = gain, offset
        if rng.random() < aug.asymmetric_prob:
            gain_r, offset_r = rng.uniform(*aug.gain_range), rng.uniform(*aug.offset_range)
        return [white_level, gain, offset, gain_r, offset_r]


def _transportable(image: np.ndarray) -> np.ndarray:
    # torch has little uint16 support: widen to int32 (the same bytes as float32, but exact)
    return np.ascontiguousarray(image, dtype=np.int32 if image.dtype == np.uint16 else image.dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Move a collated batch to ``device``; images become float32 in [0, 1] with their augmentation.

    ``I = stored / white · gain + offset`` per view, identical for every angle image. No
    clipping: clipping one angle image but not another would break I0 + I90 = I45 + I135.
    """
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    p = out.pop("photometric").float()
    shape = (-1,) + (1,) * (out["left"].dim() - 1)
    white = p[:, 0].view(shape)
    out["left"] = out["left"].float() / white * p[:, 1].view(shape) + p[:, 2].view(shape)
    out["right"] = out["right"].float() / white * p[:, 3].view(shape) + p[:, 4].view(shape)
    return out


class MixturePlan:
    """Which sample fills each slot of each global step, for a mixture of datasets.

    ``steps[i]`` global steps draw their batch from dataset ``i`` (torchvision's
    ``--train-datasets A B --dataset-steps 264000 18000``). ``order="sequential"``
    trains on the datasets one after the other in the given order (torchvision's
    default); ``"shuffle"`` interleaves the steps at random, keeping the proportions.
    Samples within a dataset are drawn in epochs of random permutations.
    """

    def __init__(self, lengths: Sequence[int], steps: Sequence[int], global_batch: int, seed: int = 0,
                 order: str = "sequential"):
        if len(lengths) != len(steps):
            raise PolstereoError(f"{len(lengths)} training files but {len(steps)} --dataset-steps values")
        if order not in ("sequential", "shuffle"):
            raise PolstereoError(f"unknown dataset order {order!r}; use 'sequential' or 'shuffle'")
        if any(n <= 0 for n in lengths):
            raise PolstereoError("a training file holds no samples")
        self.lengths, self.steps = list(lengths), [int(s) for s in steps]
        self.global_batch, self.seed = global_batch, seed
        schedule = np.repeat(np.arange(len(steps)), self.steps)
        if order == "shuffle":
            np.random.default_rng([seed, 1]).shuffle(schedule)
        self.schedule = schedule
        # position of each step within its dataset's own run of steps
        self.rank_in_dataset = np.zeros(len(schedule), dtype=np.int64)
        for d in range(len(steps)):
            where = np.flatnonzero(schedule == d)
            self.rank_in_dataset[where] = np.arange(len(where))

    @property
    def total_steps(self) -> int:
        return len(self.schedule)

    def batch(self, step: int) -> list[tuple[int, int]]:
        """``(dataset, sample_index)`` for every slot of global step ``step``."""
        d = int(self.schedule[step])
        n = self.lengths[d]
        first = int(self.rank_in_dataset[step]) * self.global_batch
        out = []
        for k in range(self.global_batch):
            draw = first + k
            epoch, pos = divmod(draw, n)
            perm = np.random.default_rng([self.seed, 2, d, epoch]).permutation(n)
            out.append((d, int(perm[pos])))
        return out


class MixtureDataset(Dataset):
    """Several :class:`StereoCropDataset` behind one index ``(dataset, sample, step, slot)``."""

    def __init__(self, datasets: Sequence[StereoCropDataset]):
        self.datasets = list(datasets)
        angles = {tuple(d.angles_deg) for d in self.datasets}
        if len(angles) > 1:
            raise PolstereoError(f"training files use different polarizer angles: {sorted(angles)}")
        shapes = {(d.reader.attrs["color"]) for d in self.datasets}
        if len(shapes) > 1:
            raise PolstereoError("training files mix mono and RGB data")

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        d, index, step, slot = key
        return self.datasets[d][(index, step, slot)]


class PlanSampler(Sampler):
    """Yields the keys of steps ``start_step .. end`` for one rank's share of each batch.

    With ``world_size`` ranks and per-rank batch ``b`` the global batch is ``b · world``;
    rank ``r`` takes slots ``r·b .. r·b + b − 1`` of every step.
    """

    def __init__(self, plan: MixturePlan, start_step: int = 0, rank: int = 0, world_size: int = 1):
        if plan.global_batch % world_size:
            raise PolstereoError("global batch must be divisible by the number of processes")
        self.plan, self.start_step, self.rank, self.world = plan, start_step, rank, world_size
        self.per_rank = plan.global_batch // world_size

    def __len__(self) -> int:
        return (self.plan.total_steps - self.start_step) * self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        lo = self.rank * self.per_rank
        for step in range(self.start_step, self.plan.total_steps):
            batch = self.plan.batch(step)
            for slot in range(lo, lo + self.per_rank):
                d, index = batch[slot]
                yield d, index, step, slot
