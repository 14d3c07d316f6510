"""The built-in base stereo network and its named sizes.

Reads like the figure: encode both views to 1/4 resolution -> global matching over
the whole row (initial disparity + confidence) -> ``iters`` local refinement steps
with correlation lookups -> convex upsampling to full resolution. A base may carry a
second, gated correlation volume from polarization (``polarization``, see
:mod:`polstereo.models.polarization_volume`), looked up in the same steps.

Sizes are data (:data:`MODEL_CONFIGS`); :func:`create_model` builds one by name with
overrides, and :meth:`BaseConfig.to_dict` is the plain-dict form a checkpoint stores.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.plain_config import PlainConfig
from polstereo.models.base.encoder import StereoEncoder
from polstereo.models.layers import NORMS
from polstereo.models.base.matching import correlation_1d, global_matching
from polstereo.models.base.refine import CorrPyramid, UpdateBlock, corr_lookup, corr_pyramid
from polstereo.models.base.upsample import convex_upsample

FACTOR = 4  # the network works at 1/4 resolution


@dataclass(frozen=True)
class BaseConfig(PlainConfig):
    """Shape of a :class:`BaseStereoNet` (plain values only, so it round-trips through a dict).

    encoder_dims: trunk channels at 1/2, 1/4, and the trunk output.
    encoder_blocks: residual blocks per trunk stage.
    norm: trunk normalization (``instance`` | ``batch`` | ``group`` | ``none``).
    feature_dim: matching-feature channels; hidden_dim / context_dim / motion_dim: update block.
    corr_levels, corr_radius: correlation pyramid depth and lookup radius (pixels per level).
    iters: default number of refinement iterations (``forward(iters=...)`` overrides).
    pad_multiple: inputs are replicate-padded to a multiple of this, then cropped back.
    """

    what = "base model"

    encoder_dims: tuple[int, int, int] = (16, 24, 32)
    encoder_blocks: int = 1
    norm: str = "instance"
    feature_dim: int = 32
    hidden_dim: int = 32
    context_dim: int = 32
    motion_dim: int = 32
    corr_levels: int = 2
    corr_radius: int = 3
    iters: int = 3
    pad_multiple: int = 32

    def __post_init__(self):
        if self.norm not in NORMS:
            raise PolstereoError(f"unknown norm {self.norm!r}; expected one of {', '.join(NORMS)}")
        if self.pad_multiple % FACTOR:
            raise PolstereoError(f"pad_multiple must be a multiple of {FACTOR}, got {self.pad_multiple}")
        object.__setattr__(self, "encoder_dims", tuple(int(c) for c in self.encoder_dims))



MODEL_CONFIGS: dict[str, BaseConfig] = {
    # CPU-friendly: tests, demos, smoke runs.
    "tiny": BaseConfig(),
    # real-time on a GPU
    "small": BaseConfig(encoder_dims=(32, 48, 96), encoder_blocks=2, feature_dim=96, hidden_dim=64,
                        context_dim=64, motion_dim=64, corr_levels=4, corr_radius=4, iters=4),
    "base": BaseConfig(encoder_dims=(64, 96, 128), encoder_blocks=2, feature_dim=128, hidden_dim=128,
                       context_dim=128, motion_dim=128, corr_levels=4, corr_radius=4, iters=6),
}


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad ``(B, C, H, W)`` at the bottom/right to multiples of ``multiple``.

    Padding only bottom/right keeps pixel coordinates (and so disparities) unchanged.
    """
    h, w = image.shape[-2:]
    return F.pad(image, (0, (-w) % multiple, 0, (-h) % multiple), mode="replicate")


def check_image_pair(left: torch.Tensor, right: torch.Tensor) -> None:
    """Raise :class:`PolstereoError` unless left/right are matching ``(B, 1|3, H, W)`` tensors."""
    if left.dim() != 4 or left.shape != right.shape:
        raise PolstereoError(f"expected left/right images of equal shape (B, C, H, W), "
                             f"got {tuple(left.shape)} and {tuple(right.shape)}")
    if left.shape[1] not in (1, 3):
        raise PolstereoError(f"expected 1 (mono) or 3 (RGB) image channels, got {left.shape[1]}")


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(B, 1|3, H, W) -> (B, 3, H, W)``; mono is replicated."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


class BaseStereoNet(nn.Module):
    """Built-in stereo network, see the module docstring.

    ``forward(left, right, iters=None, all_estimates=None, polarization=None)`` takes
    rectified images ``(B, C, H, W)`` in [0, 1] (C = 1 or 3, any H, W) and, for a base
    with a polarization volume (:meth:`attach_polarization`), the two views' polarization
    features ``(B, 4, H, W)`` (default: the images as unpolarized light). Returns a dict:

    - ``disparity`` ``(B, 1, H, W)``: final estimate, pixels, >= 0;
    - ``disparities``: full-resolution estimates, oldest first. With ``all_estimates``
      (default: in training mode) all ``iters + 1`` of them, the global matching
      initialisation first (for a sequence loss, or to evaluate every iteration count
      in one run); otherwise only the final one (upsampling costs time at full size);
    - ``features`` ``(B, feature_dim, ceil(H/4), ceil(W/4))``: left matching features;
    - ``confidence`` ``(B, 1, H, W)`` in [0, 1]: peak probability of the global matching.
    """

    def __init__(self, config: BaseConfig = BaseConfig()):
        super().__init__()
        self.config = config
        c = config
        self.encoder = StereoEncoder(c.encoder_dims, c.encoder_blocks, c.norm, c.feature_dim,
                                     c.hidden_dim, c.context_dim)
        # Learned sharpness of the matching softmax (log scale on the scaled dot product).
        self.match_log_scale = nn.Parameter(torch.zeros(()))
        self.update = UpdateBlock(c.corr_levels * (2 * c.corr_radius + 1), c.hidden_dim, c.context_dim,
                                  c.motion_dim, FACTOR)
        # registered when None, so a base given a volume later keeps its parameter order
        self.add_module("polarization", None)

    def attach_polarization(self, volume: nn.Module | None) -> "BaseStereoNet":
        """Give the refinement a second, gated correlation volume (None: take it away).
        It must be built for this base's ``motion_dim`` and ``corr_radius``."""
        self.polarization = volume
        return self

    def config_dict(self) -> dict:
        """Plain-dict description for checkpoints (see ``polstereo.models.registry``)."""
        return {"kind": "builtin", "config": self.config.to_dict()}

    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                all_estimates: bool | None = None,
                polarization: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        check_image_pair(left, right)
        h, w = left.shape[-2:]
        m = self.config.pad_multiple
        if self.polarization is not None:
            if polarization is None:
                polarization = (self.polarization.unpolarized(left), self.polarization.unpolarized(right))
            polarization = tuple(pad_to_multiple(f, m) for f in polarization)
        out = self.forward_padded(pad_to_multiple(to_rgb(left), m), pad_to_multiple(to_rgb(right), m), iters,
                                  all_estimates, polarization)
        return {
            "disparity": out["disparity"][..., :h, :w],
            "disparities": [e[..., :h, :w] for e in out["disparities"]],
            "features": out["features"][..., :-(-h // FACTOR), :-(-w // FACTOR)],
            "confidence": out["confidence"][..., :h, :w],
        }

    def forward_padded(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                       all_estimates: bool | None = None,
                       polarization: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        """The network proper on ``(B, 3, H, W)`` images in [0, 1] with H, W multiples of 4
        (and, with a polarization volume, the views' features ``(B, 4, H, W)``, required).

        Same outputs as :meth:`forward`, at the given size. Export this one (with H, W
        declared as multiples of ``pad_multiple``) and pad/crop outside the graph:
        exporters cannot prove the crop bounds of arbitrary sizes symbolically.
        """
        iters = self.config.iters if iters is None else int(iters)
        all_estimates = self.training if all_estimates is None else all_estimates
        feat_left, feat_right, hidden, context = self.encoder(left * 2.0 - 1.0, right * 2.0 - 1.0)
        corr = correlation_1d(feat_left, feat_right)
        disparity, confidence = global_matching(corr * self.match_log_scale.exp())
        pyramid = CorrPyramid(corr_pyramid(corr, self.config.corr_levels), self.config.corr_radius)
        pol_pyramid = None if self.polarization is None else self.polarization.pyramid(*polarization)

        estimates = []
        for step in range(iters + 1):
            if step > 0:
                # Detached as in RAFT: each step learns a correction, not through earlier steps.
                disparity = disparity.detach()
                lookup = corr_lookup(pyramid, disparity, self.config.corr_radius)
                pol_motion = None if pol_pyramid is None else self.polarization.motion(pol_pyramid, disparity)
                hidden, delta = self.update(hidden, context, lookup, disparity, pol_motion)
                disparity = (disparity + delta.float()).clamp_min(0.0)
            # Upsampling every step is for the sequence loss; inference needs only the last.
            if all_estimates or step == iters:
                mask = self.update.mask(hidden)
                estimates.append(convex_upsample(disparity * FACTOR, mask, FACTOR))

        return {
            "disparity": estimates[-1],
            "disparities": estimates,
            "features": feat_left,
            "confidence": convex_upsample(confidence, mask, FACTOR).clamp(0.0, 1.0),
        }


def create_model(name: str = "tiny", **overrides) -> BaseStereoNet:
    """Build a base network by size name (``tiny`` | ``small`` | ``base``) with field overrides."""
    if name not in MODEL_CONFIGS:
        raise PolstereoError(f"unknown base model size {name!r}; expected one of {', '.join(MODEL_CONFIGS)}")
    values = {**MODEL_CONFIGS[name].to_dict(), **overrides}
    return BaseStereoNet(BaseConfig.from_dict(values))
