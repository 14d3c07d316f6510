"""The full network: base stereo model + polarization correction.

``final = base_disparity + max_correction * tanh(raw)``, ``raw`` from the correction
module fed with ``pol_diff = P(left) - warp(P(right), d_warp)``. Where ``d_warp`` comes
from is chosen per call, as the three-stage plan needs:

- ``warp_source="gt"`` (stage B): the ground-truth disparity; its non-finite pixels
  fall back to the base prediction;
- ``warp_source="pred"`` (stage C, inference): the base prediction, detached or not
  (``detach_warp``).

What the base sees is ``base_input``: ``"intensity"`` (the design: S0/2, the image an
ordinary camera would give), ``"polarization"`` (early fusion, the obvious alternative
to a correction: the base's three input channels carry the intensity and the normalized
Stokes, see :func:`base_image`) or ``"polarization-adapter"`` (the intensity plus the
residual of a small :class:`~polstereo.models.adapter.PolarizationAdapter`, zero at
initialisation: a warm start from an intensity base that equals it at step 0) or
``"polarization-volume"`` (the intensity, and in the refinement a second correlation
volume from a polarization encoder, gated to zero at initialisation: also the base at
step 0; built-in bases only, see :mod:`polstereo.models.polarization_volume`).

Freezing a part (``freeze_base()`` ...) turns off its gradients *and* keeps its
normalization layers in eval mode through later ``model.train()`` calls. The adapter
and the polarization volume belong to the part ``"base"``: frozen and trained with it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.models.adapter import PolarizationAdapter, adapter_features, unpolarized_features
from polstereo.models.base.network import BaseStereoNet
from polstereo.models.correction import CorrectionModule, bounded_correction, saturation_fraction, search_costs
from polstereo.models.polarization_volume import PolarizationVolume, PolarizationVolumeConfig
from polstereo.models.warp import warp
from polstereo.polar.features import intensity_image, pol_features
from polstereo.polar.shape import shape_features
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG

WARP_SOURCES = ("gt", "pred")
PARTS = ("base", "correction")
BASE_INPUTS = ("intensity", "polarization", "polarization-adapter", "polarization-volume")
ADAPTER_INPUT = "polarization-adapter"
VOLUME_INPUT = "polarization-volume"
DEFAULT_MAX_CORRECTION = 4.0  # px: the correction bound of a model built without one


def check_warp_source(warp_source: str, what: str = "warp_source") -> str:
    """``warp_source`` if it is one of :data:`WARP_SOURCES`, else a one-line error naming ``what``."""
    if warp_source not in WARP_SOURCES:
        raise PolstereoError(f"unknown {what} {warp_source!r}; expected one of {', '.join(WARP_SOURCES)}")
    return warp_source


def check_bound(max_correction: float) -> float:
    """``max_correction`` as a float; a one-line usage error unless positive and finite."""
    value = float(max_correction)
    if not (math.isfinite(value) and value > 0):
        raise PolstereoError(f"--max-correction must be a positive number of pixels (finite), got {max_correction}",
                             EXIT_USAGE)
    return value


FUSION_GAIN = 2.0  # glass DoLP is ~0.05-0.4: spread the Stokes channels over more of [0, 1]


def base_image(stack: torch.Tensor, angles_deg: Sequence[float], base_input: str = "intensity",
               intensity: torch.Tensor | None = None) -> torch.Tensor:
    """The image the base model matches, from an angle stack ``(B, A, C, H, W)`` in [0, 1].

    ``intensity``: S0/2, ``(B, C, H, W)``. ``polarization`` (early fusion): ``(B, 3, H, W)``
    = (grey S0/2, ½ + ½·g·S1/S0, ½ + ½·g·S2/S0) with g = :data:`FUSION_GAIN`, clipped to
    [0, 1]; colour is averaged to grey first. Still a 3-channel image in [0, 1], so the
    same network takes it, and a horizontal flip with the angle images mirrored negates
    only the S2 channel about ½, as it should. ``intensity``: S0/2 clamped to [0, 1], when
    the caller has it already.
    """
    if intensity is None:
        intensity = intensity_image(stack, angles_deg).clamp(0.0, 1.0)
    if base_input == "intensity":
        return intensity
    pol = pol_features(stack, angles_deg)  # (B, 2C, H, W): S1/S0 of each colour, then S2/S0
    c = stack.shape[2]
    s1, s2 = pol[:, :c].mean(dim=1, keepdim=True), pol[:, c:].mean(dim=1, keepdim=True)
    return torch.cat([intensity.mean(dim=1, keepdim=True), 0.5 + 0.5 * FUSION_GAIN * s1,
                      0.5 + 0.5 * FUSION_GAIN * s2], dim=1).clamp(0.0, 1.0)


class PolStereoModel(nn.Module):
    """Base stereo model plus optional polarization correction.

    Args:
        base: a base model, ``forward(left, right, iters=None) -> dict`` on ``(B, C, H, W)``
            images in [0, 1] (``BaseStereoNet`` or ``S2M2Base``).
        correction: a :class:`CorrectionModule`, or None for a base-only model (stage A).
        max_correction: bound of the correction, pixels.
        angles_deg: polarizer angles of the input stacks (per-call override in ``forward``).
        base_input: ``"intensity"``, ``"polarization"`` (early fusion, see :func:`base_image`),
            ``"polarization-adapter"`` (see :mod:`polstereo.models.adapter`) or
            ``"polarization-volume"`` (see :mod:`polstereo.models.polarization_volume`).
        adapter: the :class:`PolarizationAdapter` of a ``"polarization-adapter"`` model
            (default: a new one, zero at initialisation); None for the other inputs.
        polarization_volume: the shape of a ``"polarization-volume"`` model's volume
            (default: :class:`PolarizationVolumeConfig`); a new one is attached to the base
            (gate at zero) unless the base has one already.
    """

    def __init__(self, base: nn.Module, correction: CorrectionModule | None = None,
                 max_correction: float = DEFAULT_MAX_CORRECTION, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                 base_input: str = "intensity", adapter: PolarizationAdapter | None = None,
                 polarization_volume: PolarizationVolumeConfig | None = None):
        super().__init__()
        self.max_correction = max_correction  # checked here, as on every later assignment
        _check_base_input(base_input)
        if adapter is not None and base_input != ADAPTER_INPUT:
            raise PolstereoError(f"a polarization adapter needs base_input {ADAPTER_INPUT!r}, not {base_input!r}")
        if (polarization_volume is not None or getattr(base, "polarization", None) is not None) \
                and base_input != VOLUME_INPUT:
            raise PolstereoError(f"a polarization volume needs base_input {VOLUME_INPUT!r}, not {base_input!r}")
        self._base_input = base_input
        self.base = base
        # registered even when None, so parameters (and optimizer state) keep one order
        # however the model was put together: base, correction, adapter
        self.add_module("correction", correction)
        self.add_module("adapter", adapter if adapter is not None or base_input != ADAPTER_INPUT
                        else PolarizationAdapter())
        if base_input == VOLUME_INPUT and self.polarization_volume is None:
            _volume_base(base).attach_polarization(new_volume(base, polarization_volume))
        self.angles_deg = tuple(float(a) for a in angles_deg)
        self._frozen = {part: False for part in PARTS}

    @property
    def max_correction(self) -> float:
        """Bound of the correction, pixels; assigning it checks it (:func:`check_bound`)."""
        return self._max_correction

    @max_correction.setter
    def max_correction(self, value: float) -> None:
        self._max_correction = check_bound(value)

    @property
    def base_input(self) -> str:
        """What the base sees (:data:`BASE_INPUTS`); assigning it is :meth:`set_base_input`."""
        return self._base_input

    @base_input.setter
    def base_input(self, value: str) -> None:
        self.set_base_input(value)

    @property
    def polarization_volume(self) -> PolarizationVolume | None:
        """The base's second, polarization correlation volume (``"polarization-volume"``), else None."""
        return getattr(self.base, "polarization", None)

    def set_base_input(self, base_input: str, seed: int = 0) -> "PolStereoModel":
        """Change what the base sees. Switching to ``"polarization-adapter"`` attaches a new
        adapter (zero residual, hidden layers from ``seed``; kept if there is one already),
        to ``"polarization-volume"`` a new polarization volume to the base (zero gate, the
        other layers from ``seed``; built-in bases only), each frozen and in the mode the
        base is; switching away drops them."""
        _check_base_input(base_input)
        if base_input == VOLUME_INPUT:
            _volume_base(self.base)  # refuse S2M2 before changing anything
        if base_input == ADAPTER_INPUT and self.adapter is None:
            self.adapter = self._like_base(PolarizationAdapter(seed=seed))
        elif base_input != ADAPTER_INPUT:
            self.adapter = None
        if base_input == VOLUME_INPUT and self.polarization_volume is None:
            self.base.attach_polarization(self._like_base(new_volume(self.base, seed=seed)))
        elif base_input != VOLUME_INPUT and self.polarization_volume is not None:
            self.base.attach_polarization(None)
        self._base_input = base_input
        return self

    def _like_base(self, module: nn.Module) -> nn.Module:
        """A new part of the base on its device and dtype, frozen and in the mode the base is."""
        reference = next(self.base.parameters(), None)
        if reference is not None:
            module = module.to(device=reference.device, dtype=reference.dtype)
        frozen = self._frozen["base"]
        return module.requires_grad_(not frozen).train(self.training and not frozen)

    # ------------------------------------------------------------------ freezing
    def _part_modules(self, part: str) -> list[nn.Module]:
        """The modules of a part that exist: ``base`` is the base and its adapter."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
        modules = [self.base, self.adapter] if part == "base" else [self.correction]
        return [m for m in modules if m is not None]

    def set_frozen(self, part: str, frozen: bool) -> "PolStereoModel":
        """Freeze (no gradients, eval-mode normalization) or unfreeze ``base`` (with the
        adapter) / ``correction``."""
        modules = self._part_modules(part)
        self._frozen[part] = bool(frozen)
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(not frozen)
            module.train(self.training and not frozen)
        return self

    def is_frozen(self, part: str) -> bool:
        self._part_modules(part)
        return self._frozen[part]

    def freeze_base(self):
        return self.set_frozen("base", True)

    def unfreeze_base(self):
        return self.set_frozen("base", False)

    def freeze_correction(self):
        return self.set_frozen("correction", True)

    def unfreeze_correction(self):
        return self.set_frozen("correction", False)

    def train(self, mode: bool = True) -> "PolStereoModel":
        super().train(mode)
        for part, frozen in self._frozen.items():
            if frozen:
                for module in self._part_modules(part):
                    module.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward_intensity(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                          all_estimates: bool | None = None) -> dict:
        """Base model alone on ordinary images ``(B, C, H, W)`` in [0, 1] (no polarization).

        An early-fusion base (``base_input="polarization"``) gets them as unpolarized light:
        grey intensity and Stokes channels at ½; the adapter and the polarization volume
        too (S1 = S2 = DoLP = 0), so ordinary pairs take the same path as angle stacks."""
        if self.polarization_volume is not None:
            features = (unpolarized_features(left), unpolarized_features(right))
            return self.base(left, right, iters=iters, all_estimates=all_estimates, polarization=features)
        if self.adapter is not None:
            left, right = (self.adapter(unpolarized_features(x), x) for x in (left, right))
        elif self.base_input == "polarization":
            grey = [x.mean(dim=1, keepdim=True) for x in (left, right)]
            left, right = (torch.cat([g, torch.full_like(g, 0.5), torch.full_like(g, 0.5)], dim=1) for g in grey)
        return self.base(left, right, iters=iters, all_estimates=all_estimates)

    def forward(self, left: torch.Tensor, right: torch.Tensor, angles_deg: Sequence[float] | None = None,
                gt_disparity: torch.Tensor | None = None, warp_source: str = "pred",
                detach_warp: bool = True, iters: int | None = None, all_estimates: bool | None = None) -> dict:
        """Run on polarizer-angle stacks ``left``, ``right`` ``(B, A, C, H, W)`` in [0, 1].

        Args:
            angles_deg: the A polarizer angles (default: the model's).
            gt_disparity: ``(B, 1, H, W)`` or ``(B, H, W)``, pixels, non-finite = unknown;
                required for ``warp_source="gt"``.
            warp_source: ``"gt"`` or ``"pred"``, the disparity that warps the right features.
            detach_warp: stop gradients through the predicted warp disparity.
            iters: base refinement iterations (default: the base's).
            all_estimates: return every intermediate base estimate in ``disparities``
                (default: in training mode; see the base model).

        Returns the base's dict (``disparities``, ``features``, ``confidence``, ...) with
        ``disparity`` replaced by the final estimate ``(B, 1, H, W)`` (>= 0) and
        ``base_disparity``, ``correction`` (pixels), ``raw``, ``saturation_fraction``
        (0-dim tensor), ``pol_diff`` and ``warp_valid`` added. Without a correction
        module, ``disparity`` is the base disparity and the correction entries are None.
        """
        angles = self.angles_deg if angles_deg is None else tuple(float(a) for a in angles_deg)
        _check_stacks(left, right, len(angles))
        check_warp_source(warp_source)
        intensity_left = intensity_image(left, angles).clamp(0.0, 1.0)
        intensity_right = intensity_image(right, angles).clamp(0.0, 1.0)
        polarization = {}
        if self.base_input in ("intensity", VOLUME_INPUT):
            base_left, base_right = intensity_left, intensity_right
            if self.polarization_volume is not None:
                polarization["polarization"] = (adapter_features(left, angles, intensity_left),
                                                adapter_features(right, angles, intensity_right))
        elif self.adapter is not None:
            base_left = self.adapter(adapter_features(left, angles, intensity_left), intensity_left)
            base_right = self.adapter(adapter_features(right, angles, intensity_right), intensity_right)
        else:
            base_left = base_image(left, angles, self.base_input, intensity_left)
            base_right = base_image(right, angles, self.base_input, intensity_right)
        out = dict(self.base(base_left, base_right, iters=iters, all_estimates=all_estimates, **polarization))
        base_disparity = out["disparity"]
        out["base_disparity"] = base_disparity
        if self.correction is None:
            out.update(correction=None, raw=None, saturation_fraction=None, pol_diff=None, warp_valid=None)
            return out

        predicted = base_disparity.detach() if detach_warp else base_disparity
        if warp_source == "gt":
            gt = _check_gt(gt_disparity, base_disparity.shape)
            warp_disparity = torch.where(torch.isfinite(gt), gt.to(predicted.dtype), predicted)
        else:
            warp_disparity = predicted
        pol_left, pol_right = pol_features(left, angles), pol_features(right, angles)
        warped_right, valid = warp(pol_right, warp_disparity)
        pol_diff = (pol_left - warped_right) * valid.to(pol_left.dtype)
        width = base_disparity.shape[-1]
        offsets = self.correction.config.search_offsets
        search_cost = search_costs(pol_left, pol_right, intensity_left, intensity_right,
                                   base_disparity.detach(), offsets) if offsets else None
        # the base's shape against the left view's polarization; detached like the search volume
        shape = shape_features(left, base_disparity.detach(), angles) if self.correction.config.shape_features else None
        raw = self.correction(pol_diff, pol_left, base_disparity / width, valid, search_cost, shape)
        correction = bounded_correction(raw, self.max_correction)
        out.update(
            disparity=(base_disparity + correction).clamp_min(0.0),
            correction=correction,
            raw=raw,
            saturation_fraction=saturation_fraction(raw, self.correction.config.saturation_threshold),
            pol_diff=pol_diff,
            warp_valid=valid,
        )
        return out


def _check_base_input(base_input: str) -> None:
    if base_input not in BASE_INPUTS:
        raise PolstereoError(f"unknown base_input {base_input!r}; expected one of {', '.join(BASE_INPUTS)}")


def _volume_base(base: nn.Module) -> BaseStereoNet:
    """``base`` if it can take a polarization volume (a built-in one), else a one-line error."""
    if not isinstance(base, BaseStereoNet):
        raise PolstereoError(f"base_input {VOLUME_INPUT!r} needs a built-in base (tiny, small, base): its second "
                             f"correlation volume feeds their refinement steps, which {type(base).__name__} does not "
                             f"expose; use {ADAPTER_INPUT!r} instead")
    return base


def new_volume(base: BaseStereoNet, config: PolarizationVolumeConfig | None = None,
               seed: int = 0) -> PolarizationVolume:
    """A new polarization volume (gate at zero) shaped for ``base``'s refinement."""
    return PolarizationVolume(base.config.motion_dim, base.config.corr_radius,
                              config or PolarizationVolumeConfig(), seed=seed)


def _check_stacks(left: torch.Tensor, right: torch.Tensor, n_angles: int) -> None:
    if left.dim() != 5 or left.shape != right.shape:
        raise PolstereoError(f"expected left/right angle stacks of equal shape (B, A, C, H, W), "
                             f"got {tuple(left.shape)} and {tuple(right.shape)}")
    if left.shape[1] != n_angles:
        raise PolstereoError(f"angle stacks hold {left.shape[1]} images but {n_angles} polarizer angles are set")


def _check_gt(gt: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    if gt is None:
        raise PolstereoError('warp_source="gt" needs gt_disparity')
    if gt.dim() == 3:
        gt = gt.unsqueeze(1)
    if gt.shape != shape:
        raise PolstereoError(f"gt_disparity has shape {tuple(gt.shape)}, expected {tuple(shape)}")
    return gt
