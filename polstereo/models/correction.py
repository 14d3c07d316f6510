"""Polarization correction module: ``raw`` ``(B, 1, H, W)`` from the polarization evidence.

Inputs, all ``(B, ·, H, W)`` at full resolution, C the colour channels: ``pol_diff = P(left)
− warp(P(right), d)`` (2C), ``P(left)`` (2C), the base disparity divided by the image width
(1), the warp validity (1), and optionally the search cost volume (2 per offset,
:func:`search_costs`) and the one-view shape cues (9). ``raw`` is unbounded; the correction
is ``max_correction · tanh(raw)`` pixels (:func:`bounded_correction`). The design, its
inputs and options, and what each measured: docs/models.md ("Correction module").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.plain_config import PlainConfig, RetiredField
from polstereo.models.layers import NORMS, ResidualBlock, make_norm
from polstereo.models.warp import offset_candidates, warp_disagreement_candidates
from polstereo.polar.shape import SHAPE_FEATURE_NAMES

DEFAULT_SATURATION_THRESHOLD = 0.99
CONTEXTS = ("dilated", "unet")
UNET_LEVELS = 4  # 1/2 ... 1/16
# removed levers (docs/notebook/2026-12-07-removed-levers.md): configs saved with their default still read
RETIRED_SWITCHES = {
    "context_stride": RetiredField(2, "--correction-context-stride", "context at 1/4 after stage B: glass -1.0 %, "
                                   "opaque +8.4 %, against -1.1 % / +0.3 % at 1/2", "2b20068"),
    "integrate": RetiredField(False, "--correction-integrate", "slope integration: glass -0.2 % alone, and the "
                              "best combination -1.1 % with it, -2.0 % without", "2b20068"),
}


def switch(option: str, help: str, *, metavar: str | None = None, choices: tuple[str, ...] | None = None,
           check=None) -> dict:
    """Field metadata of a :class:`CorrectionConfig` switch a training run may set.

    ``option``: the command-line flag; ``help``: what it does to the new module (the default
    is added from the field); ``choices``: the values of a text field; ``check(value)``: what
    the option accepts beyond what the config accepts, raising PolstereoError.
    A boolean switch is a flag (given: True; not given: the module's default).
    """
    return {"option": option, "help": help, "metavar": metavar, "choices": choices, "check": check}


def check_search_option(radius: float) -> float:
    """What ``--correction-search`` accepts: 0 (off) or a radius from 2 to 64 px."""
    if not (radius == 0 or 2.0 <= radius <= 64.0):
        raise PolstereoError(f"{radius} is not 0 (off) or a radius from 2 to 64 px (the step is 2 px)")
    return radius


@dataclass(frozen=True)
class CorrectionConfig(PlainConfig):
    """Shape of a :class:`CorrectionModule` (plain values, round-trips through a dict).

    color_channels: C of the angle stacks (1 mono, 3 RGB); inputs have 4C + 2 channels.
    width: channels of the context blocks (half of it at full resolution);
    dilations: one residual block per entry, at 1/2 resolution (``context="dilated"``).
    context: ``dilated`` (the blocks above) or ``unet`` (an encoder-decoder from 1/2 down to
        1/16 and back, ``width`` channels at every level; ``dilations`` unused).
    shape_features: also take the 9 one-view shape cue channels (docs/models.md).
    norm: ``group`` (default, batch-size independent) | ``batch`` | ``instance`` | ``none``.
    saturation_threshold: |tanh(raw)| above this counts as saturated.
    search_radius, search_step: the search cost volume's offsets from the base disparity,
        ``-radius..radius`` in ``step`` px (0 = off, the design's plain pol_diff input).

    A field with :func:`switch` metadata is one a training run may set when it builds a new
    module: it becomes ``TrainConfig.model.correction.<field>`` and the command-line option
    the metadata names, generated with its type, default and help (a new switch is a field
    here, nothing more; docs/architecture.md). ``retired``: the switches removed since, which a
    stored config may still name with their old default.
    """

    what = "correction module"
    retired = RETIRED_SWITCHES

    color_channels: int = 1
    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4)
    norm: str = "group"
    saturation_threshold: float = DEFAULT_SATURATION_THRESHOLD
    search_radius: float = field(default=0.0, metadata=switch(
        "--correction-search", "a cost volume of polarization and intensity disagreement at base + k for "
        "|k| <= PX (step 2 px; 0 = plain pol_diff)", metavar="PX", check=check_search_option))
    search_step: float = 2.0
    context: str = field(default="dilated", metadata=switch(
        "--correction-context", "the context: dilated blocks at 1/2, or an encoder-decoder down to 1/16 that "
        "spans whole objects", choices=CONTEXTS))
    shape_features: bool = field(default=False, metadata=switch(
        "--correction-shape", "also take the one-view shape cues (DoLP, AoLP as 4φ and 2φ, zenith, the base's "
        "gradient and its consistency with the AoLP; docs/models.md)"))

    def __post_init__(self):
        if self.color_channels not in (1, 3):
            raise PolstereoError(f"correction color_channels must be 1 or 3, got {self.color_channels}")
        if self.norm not in NORMS:
            raise PolstereoError(f"unknown norm {self.norm!r}; expected one of {', '.join(NORMS)}")
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.context not in CONTEXTS:
            raise PolstereoError(f"unknown correction context {self.context!r}; expected one of {', '.join(CONTEXTS)}")
        if self.search_radius < 0 or self.search_step <= 0:
            raise PolstereoError(f"correction search_radius must be >= 0 and search_step > 0, got "
                                 f"{self.search_radius} and {self.search_step}")

    @property
    def search_offsets(self) -> tuple[float, ...]:
        """Offsets (px) from the base disparity of the search cost volume; empty when off."""
        if self.search_radius <= 0:
            return ()
        n = int(self.search_radius // self.search_step)
        return tuple(float(k * self.search_step) for k in range(-n, n + 1))

    @property
    def in_channels(self) -> int:
        shape = len(SHAPE_FEATURE_NAMES) if self.shape_features else 0
        return 4 * self.color_channels + 2 + 2 * len(self.search_offsets) + shape


def bounded_correction(raw: torch.Tensor, max_correction: float) -> torch.Tensor:
    """``max_correction * tanh(raw)``: a correction in pixels, ``|·| <= max_correction``."""
    return max_correction * torch.tanh(raw)


def saturation_fraction(raw: torch.Tensor, threshold: float = DEFAULT_SATURATION_THRESHOLD,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of pixels with ``|tanh(raw)| > threshold`` (a 0-dim tensor in [0, 1]).

    The danger signal of the three-stage plan: a saturated tanh has (almost) no gradient.
    ``mask`` (bool, broadcastable to ``raw``) restricts the count to some pixels; an
    empty mask gives 0.
    """
    saturated = (torch.tanh(raw.detach()).abs() > threshold).to(torch.float32)
    if mask is None:
        return saturated.mean()
    mask = mask.expand_as(saturated).to(torch.float32)
    return (saturated * mask).sum() / mask.sum().clamp_min(1.0)


def search_costs(pol_left: torch.Tensor, pol_right: torch.Tensor, intensity_left: torch.Tensor,
                 intensity_right: torch.Tensor, disparity: torch.Tensor, offsets,
                 batched: bool | None = None) -> torch.Tensor:
    """``(B, 2K, H, W)``: per offset k, the channel-mean |left − warp(right, d + k)| of the
    polarization features, then of the intensity image; 1 (the cost of no agreement)
    where d + k is negative (no such disparity) or the warp leaves the image.
    ``batched``: all offsets in one pass or a loop, the same result (see
    :func:`~polstereo.models.warp.warp_disagreement_candidates`)."""
    candidates = offset_candidates(disparity, offsets)
    features = []
    for left, right in ((pol_left, pol_right), (intensity_left, intensity_right)):
        cost, valid = warp_disagreement_candidates(left, right, candidates, batched)
        features.append(torch.where(valid & (candidates >= 0), cost / left.shape[1], torch.ones_like(cost)))
    return torch.cat(features, dim=1)


class UNetContext(nn.Module):
    """``(B, c_in, H, W) -> (B, width, H/2, W/2)``: residual blocks down to 1/2^levels, then
    back up to 1/2 with a skip from each level (bilinear upsample, concat, 3x3 conv)."""

    def __init__(self, c_in: int, width: int, norm: str, levels: int = UNET_LEVELS):
        super().__init__()
        self.down = nn.ModuleList([ResidualBlock(c_in if i == 0 else width, width, norm, stride=2)
                                   for i in range(levels)])
        self.up = nn.ModuleList([nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), make_norm(norm, width),
                                               nn.ReLU(inplace=True)) for _ in range(levels - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        y = skips.pop()
        for block, skip in zip(self.up, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return y


class CorrectionModule(nn.Module):
    """``forward(pol_diff, pol_left, disparity_norm, valid[, search_cost, shape]) -> raw (B, 1, H, W)``;
    see module doc."""

    def __init__(self, config: CorrectionConfig = CorrectionConfig()):
        super().__init__()
        self.config = config
        c = config.width
        # Full resolution is where the cost is: keep it to half the channels and 1x1 fusion.
        c_full = max(8, c // 2)
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c_full, 3, padding=1),
                                  make_norm(config.norm, c_full), nn.ReLU(inplace=True))
        if config.context == "unet":
            self.down = UNetContext(c_full, c, config.norm)
            self.context = nn.Identity()
        else:
            self.down = ResidualBlock(c_full, c, config.norm, stride=2)
            self.context = nn.Sequential(*[ResidualBlock(c, c, config.norm, dilation=d) for d in config.dilations])
        self.fuse = nn.Sequential(nn.Conv2d(c_full + c, c_full, 1), make_norm(config.norm, c_full),
                                  nn.ReLU(inplace=True))
        self.head = nn.Conv2d(c_full, 1, 3, padding=1)

        # Small rather than zero: raw starts near 0 (no correction, tanh far from
        # saturation) while every layer still receives gradient from the first step.
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, pol_diff: torch.Tensor, pol_left: torch.Tensor, disparity_norm: torch.Tensor,
                valid: torch.Tensor, search_cost: torch.Tensor | None = None,
                shape: torch.Tensor | None = None) -> torch.Tensor:
        parts = [pol_diff, pol_left, disparity_norm, valid.to(pol_diff.dtype)]
        for extra in (search_cost, shape):
            if extra is not None:
                parts.append(extra.to(pol_diff.dtype))
        x = torch.cat(parts, dim=1)
        if x.shape[1] != self.config.in_channels:
            raise PolstereoError(f"correction module expects {self.config.in_channels} input channels "
                                 f"(color_channels={self.config.color_channels}, "
                                 f"{len(self.config.search_offsets)} search offsets, "
                                 f"shape features {'on' if self.config.shape_features else 'off'}), got {x.shape[1]}")
        full = self.stem(x)
        context = self.context(self.down(full))
        up = F.interpolate(context, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.fuse(torch.cat([full, up], dim=1)))
