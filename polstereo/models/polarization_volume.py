"""A second correlation volume from polarization, gated: a warm start that is the base at step 0.

``base_input="polarization-volume"`` (:class:`~polstereo.models.full.PolStereoModel`, built-in
bases only) leaves the base's image alone (the intensity) and gives its refinement a second
matching cue, as DPS-Net gives polarization its own cost volume and Stereo Anywhere adds a
second volume from a prior::

    grey S0/2, S1/S0, S2/S0, DoLP of each view            (B, 4, H, W)
      -> PolarizationEncoder (shared weights)               (B, channels, H/4, W/4)
      -> row correlation left x right, pooled into ``levels`` (as the base's own pyramid)
    every refinement step, at the current disparity estimate:
      lookup (levels · (2·radius + 1) samples, the base's radius)
      -> 1x1 conv + ReLU -> gate (1x1 conv, zero at start) -> added to the base's encoded
         correlation, the motion encoder's input

The gate starts at zero (weights and bias): its output is exactly 0, the base's motion
features ``x + 0 = x`` bit for bit, so at step 0 the model gives the base's output
(``torch.equal``). The gate's input is not zero, so its weights get a gradient from the
first backward; once they move, gradients reach the lookup projection and the encoder.

It lives in the base (``base.polarization.*`` in a state dict), so it is frozen and trained
with the base. Ordinary images (no polarization) go in as unpolarized light: S1 = S2 =
DoLP = 0 (:meth:`PolarizationVolume.unpolarized`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.adapter import ADAPTER_FEATURES, seeded_conv_init_, unpolarized_features
from polstereo.models.base.matching import correlation_1d
from polstereo.models.base.refine import CorrPyramid, corr_lookup, corr_pyramid
from polstereo.models.plain_config import PlainConfig

POLARIZATION_FEATURES = ADAPTER_FEATURES  # grey S0/2, S1/S0, S2/S0, DoLP (adapter_features)


@dataclass(frozen=True)
class PolarizationVolumeConfig(PlainConfig):
    """Shape of a :class:`PolarizationVolume` (plain values: it travels in ``model_config``).

    channels: matching-feature channels at 1/4 resolution; hidden: channels at 1/2;
    levels: correlation pyramid levels (each halves the candidate resolution).
    """

    what = "polarization volume"
    channels: int = 32
    hidden: int = 16
    levels: int = 2

    def __post_init__(self):
        if min(self.channels, self.hidden, self.levels) < 1:
            raise PolstereoError(f"polarization volume channels, hidden and levels must be >= 1, got {self}")


class PolarizationEncoder(nn.Module):
    """Per-view polarization features ``(N, 4, H, W)`` -> matching features ``(N, channels, H/4, W/4)``.

    Two stride-2 convolutions to 1/4 resolution, one more 3x3, a 1x1 head; ReLU between,
    no normalization (an unpolarized view, three channels of zeros, stays well defined).
    H and W multiples of 4, as the base's.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(POLARIZATION_FEATURES, hidden, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class PolarizationVolume(nn.Module):
    """The encoder, its correlation pyramid and the gated lookups (see the module docstring).

    Args:
        motion_dim: channels of the base's encoded correlation (``BaseConfig.motion_dim``).
        radius: lookup radius, pixels per level (the base's ``corr_radius``).
        config: encoder width and pyramid depth.
        seed: initialises every layer but the gate (zero) from this seed.
    """

    def __init__(self, motion_dim: int, radius: int, config: PolarizationVolumeConfig = PolarizationVolumeConfig(),
                 seed: int = 0):
        super().__init__()
        self.config, self.radius = config, int(radius)
        self.encoder = PolarizationEncoder(config.channels, config.hidden)
        self.lookup_enc = nn.Sequential(nn.Conv2d(config.levels * (2 * self.radius + 1), motion_dim, 1),
                                        nn.ReLU(inplace=True))
        self.gate = nn.Conv2d(motion_dim, motion_dim, 1)
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Seeded PyTorch initialisation of the encoder and lookup projection; the gate to zero."""
        generator = torch.Generator().manual_seed(int(seed))
        for conv in [*self.encoder.modules(), *self.lookup_enc.modules()]:
            if isinstance(conv, nn.Conv2d):
                seeded_conv_init_(conv, generator)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    @staticmethod
    def unpolarized(image: torch.Tensor) -> torch.Tensor:
        """The features of an ordinary image ``(B, C, H, W)`` seen as unpolarized light, ``(B, 4, H, W)``."""
        return unpolarized_features(image)

    def pyramid(self, features_left: torch.Tensor, features_right: torch.Tensor) -> CorrPyramid:
        """Correlation pyramid of the two views' features ``(B, 4, H, W)`` (H, W multiples of 4),
        level 0 ``(B, H/4, W/4, W/4)``, built once per forward."""
        encoded = self.encoder(torch.cat([features_left, features_right], dim=0))
        left, right = encoded.chunk(2, dim=0)
        return CorrPyramid(corr_pyramid(correlation_1d(left, right), self.config.levels), self.radius)

    def motion(self, pyramid: CorrPyramid, disparity: torch.Tensor) -> torch.Tensor:
        """Gated lookups at ``disparity`` ``(B, 1, h, w)`` (pixels at 1/4): ``(B, motion_dim, h, w)``,
        what is added to the base's encoded correlation; exactly 0 while the gate is."""
        return self.gate(self.lookup_enc(corr_lookup(pyramid, disparity, self.radius)))
