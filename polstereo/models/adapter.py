"""A polarization adapter in front of a pretrained base: a warm start that is the base at step 0.

``base_input="polarization-adapter"`` (:class:`~polstereo.models.full.PolStereoModel`)
lets a small per-view network add a residual to the image the base already matches::

    base image = clamp(rgb(S0/2) + adapter(grey S0/2, S1/S0, S2/S0, DoLP), 0, 1)

The adapter's last convolution starts at zero (weights and bias, as the "zero
convolutions" of ControlNet), so at step 0 the residual is exactly 0 and, the intensity
being in [0, 1] already, the base receives bit for bit the image it was trained on: the
model's output equals the base's. Gradients still reach that last layer (its input, the
hidden activations, is not zero), so training moves it off zero and polarization flows in
from there. It acts on the image, not inside the base, so any base takes it (the built-in
sizes, the S2M2 wrapper).

Convention: a horizontal mirror (with the angle images permuted as
:func:`polstereo.polar.stokes.hflip_angle_permutation` says) negates S2/S0 and keeps
S1/S0 and DoLP; the adapter is not built to be equivariant to it (training uses no
horizontal flips).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from polstereo.models.base.network import to_rgb
from polstereo.polar.features import intensity_image, pol_features

ADAPTER_FEATURES = 4   # grey S0/2, S1/S0, S2/S0, DoLP
ADAPTER_OUTPUTS = 3    # a residual on each of the base's three input channels (mono is replicated)
ADAPTER_HIDDEN = 16
ADAPTER_LAYERS = 3


def adapter_features(stack: torch.Tensor, angles_deg: Sequence[float],
                     intensity: torch.Tensor | None = None) -> torch.Tensor:
    """The adapter's input of one view, ``(B, A, C, H, W) -> (B, 4, H, W)``.

    Channels: grey S0/2 in [0, 1], then S1/S0 and S2/S0 in [-1, 1] and DoLP in [0, 1],
    colour averaged to grey (dimensionless). ``intensity``: S0/2 clamped to [0, 1],
    ``(B, C, H, W)``, when the caller has it already.
    """
    if intensity is None:
        intensity = intensity_image(stack, angles_deg).clamp(0.0, 1.0)
    c = stack.shape[2]
    pol = pol_features(stack, angles_deg)  # (B, 2C, H, W): S1/S0 of each colour, then S2/S0
    s1 = pol[:, :c].mean(dim=1, keepdim=True).clamp(-1.0, 1.0)
    s2 = pol[:, c:].mean(dim=1, keepdim=True).clamp(-1.0, 1.0)
    dolp = (s1 * s1 + s2 * s2).sqrt().clamp(0.0, 1.0)
    return torch.cat([intensity.mean(dim=1, keepdim=True), s1, s2, dolp], dim=1)


def unpolarized_features(image: torch.Tensor) -> torch.Tensor:
    """The adapter's input for an ordinary image ``(B, C, H, W)`` in [0, 1] seen as
    unpolarized light: grey intensity, S1/S0 = S2/S0 = DoLP = 0, ``(B, 4, H, W)``."""
    grey = image.mean(dim=1, keepdim=True)
    return torch.cat([grey, torch.zeros_like(grey).expand(-1, ADAPTER_FEATURES - 1, -1, -1)], dim=1)


def seeded_conv_init_(conv: nn.Conv2d, generator: torch.Generator) -> None:
    """PyTorch's own ``Conv2d`` initialisation of ``conv``, drawn from ``generator`` (on the
    CPU): a new layer is the same in every run with the same seed, whatever the global RNG."""
    with torch.no_grad():
        weight = torch.empty(conv.weight.shape)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(conv.weight[0].numel())
        bias = torch.empty(conv.bias.shape).uniform_(-bound, bound, generator=generator)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)


class PolarizationAdapter(nn.Module):
    """Per-view residual on the base's input image; zero at initialisation.

    ``layers`` 3x3 convolutions at full resolution (``hidden`` channels, GELU between),
    the same weights for both views. ``forward(features, image)``: ``features``
    ``(B, 4, H, W)`` from :func:`adapter_features` (or :func:`unpolarized_features`),
    ``image`` the base's ordinary input ``(B, 1|3, H, W)`` in [0, 1]; returns
    ``clamp(rgb(image) + residual, 0, 1)``, ``(B, 3, H, W)`` in [0, 1].

    Args:
        hidden: channels of the hidden layers.
        layers: convolutions in all (at least 2).
        seed: initialises every layer but the last (zero) from this seed, so a new
            adapter is the same in every run with the same seed, whatever the global RNG.
    """

    def __init__(self, hidden: int = ADAPTER_HIDDEN, layers: int = ADAPTER_LAYERS, seed: int = 0):
        super().__init__()
        if layers < 2:
            raise ValueError(f"an adapter needs at least 2 layers, got {layers}")
        widths = [ADAPTER_FEATURES] + [hidden] * (layers - 1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GELU()]
        self.net = nn.Sequential(*blocks)
        self.out = nn.Conv2d(hidden, ADAPTER_OUTPUTS, 3, padding=1)
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Seeded default (PyTorch) initialisation of the hidden layers; the last layer to zero."""
        generator = torch.Generator().manual_seed(int(seed))
        for conv in self.net:
            if isinstance(conv, nn.Conv2d):
                seeded_conv_init_(conv, generator)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 4, H, W) -> (B, 3, H, W)``: what is added to the base's image."""
        return self.out(self.net(features))

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return (to_rgb(image) + self.residual(features).to(image.dtype)).clamp(0.0, 1.0)
