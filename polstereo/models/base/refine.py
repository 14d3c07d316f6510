"""Local refinement: correlation-pyramid lookups around the estimate and a ConvGRU update.

The full row correlation from the global matching is pooled along x' into a pyramid
(as in RAFT-Stereo); each iteration samples every level at ``2 * radius + 1``
positions around the currently matched right pixel ``x - d`` and a ConvGRU turns
those samples, the disparity and the left context into a disparity update; its hidden
state also gives the convex-upsampling mask. Lookups use ``gather`` with linear weights: no host syncs,
no data-dependent control flow, exportable with dynamic sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polstereo.models.forms import one_pass


def corr_pyramid(corr: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``(B, h, w, w)`` -> list of ``(B, h, w, w / 2**l)``, averaged in pairs along x'."""
    b, h, w, n = corr.shape
    pyramid = [corr]
    for _ in range(levels - 1):
        flat = pyramid[-1].reshape(b * h * w, 1, -1)
        pyramid.append(F.avg_pool1d(flat, 2, stride=2).reshape(b, h, w, -1))
    return pyramid


def sample_linear(volume: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``volume (..., n)`` at ``positions (..., K)``; 0 outside [0, n-1].

    The result has the dtype of ``positions``: keep those in float32 under autocast, since
    half precision cannot resolve sub-pixel positions a few hundred pixels in. A NaN or
    infinite position gives NaN (a diverged network then shows as a non-finite loss, which
    training skips), never an out-of-range index.
    """
    return _interpolate([volume], positions, volume.shape[-1] - 1)


def _interpolate(volumes: list[torch.Tensor], positions: torch.Tensor, last) -> torch.Tensor:
    """:func:`sample_linear` of several volumes at once: the last dim of ``positions`` is
    split evenly between ``volumes``; ``last`` (broadcast to ``positions``) is the last
    valid bin of each position's volume."""
    i0 = torch.floor(positions)
    frac = positions - i0
    out = torch.zeros_like(positions)
    per_volume = positions.shape[-1] // len(volumes)
    for index, weight in ((i0, 1.0 - frac), (i0 + 1.0, frac)):
        inside = (index >= 0) & (index <= last)
        # NaN casts to the most negative int64: gather a valid bin and let the weight carry the NaN
        safe = torch.where(inside, index, torch.zeros_like(index)).long()
        if len(volumes) == 1:
            values = torch.gather(volumes[0], -1, safe)
        else:
            values = torch.cat([torch.gather(v, -1, part)
                                for v, part in zip(volumes, safe.split(per_volume, dim=-1))], dim=-1)
        out = out + values.to(positions.dtype) * weight * inside.to(positions.dtype)
    return out


class CorrPyramid:
    """The levels of :func:`corr_pyramid` and, for the one-pass :func:`corr_lookup`, per
    lookup sample (level-major, ``2·radius + 1`` per level) the level's bin-centre shift and
    scale, the sample's offset and the level's last bin: built at the first one-pass lookup,
    then reused by every refinement step."""

    def __init__(self, levels: list[torch.Tensor], radius: int):
        self.levels, self.radius = list(levels), radius
        self._tables: tuple[torch.Tensor, ...] | None = None

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(shift, scale, offsets, last)``, each ``(levels · (2·radius + 1),)`` float32."""
        if self._tables is None:
            k = 2 * self.radius + 1
            like = dict(device=self.levels[0].device, dtype=torch.float32)
            shift, scale, last = [], [], []
            for level, v in enumerate(self.levels):
                # level-l bin j averages x' in [j*2^l, (j+1)*2^l - 1], centred at j*2^l + (2^l - 1)/2
                shift.append(torch.full((k,), (2 ** level - 1) / 2, **like))
                scale.append(torch.full((k,), float(2 ** level), **like))
                last.append(torch.full((k,), v.shape[-1] - 1, **like))
            offsets = torch.arange(-self.radius, self.radius + 1, **like).repeat(len(self.levels))
            self._tables = (torch.cat(shift), torch.cat(scale), offsets, torch.cat(last))
        return self._tables


def corr_lookup(pyramid: CorrPyramid | list[torch.Tensor], disparity: torch.Tensor, radius: int,
                batched: bool | None = None) -> torch.Tensor:
    """Correlation around the matched right pixel ``x - d`` at every pyramid level.

    Args:
        pyramid: a :class:`CorrPyramid` (built once, looked up every step), or the levels
            of :func:`corr_pyramid`, level 0 ``(B, h, w, w)``.
        disparity: ``(B, 1, h, w)`` in pixels of this resolution.
        radius: samples at offsets ``-radius .. radius`` (in pixels of each level).
        batched: all levels in one pass (a few kernels per level instead of a few dozen)
            or one level at a time; the same result bit for bit (default: by device,
            :mod:`polstereo.models.forms`).

    Returns:
        ``(B, levels * (2 * radius + 1), h, w)``, float32.
    """
    if not isinstance(pyramid, CorrPyramid):
        pyramid = CorrPyramid(pyramid, radius)
    elif pyramid.radius != radius:
        raise ValueError(f"pyramid built for radius {pyramid.radius}, looked up with {radius}")
    batched = one_pass(disparity, batched)
    w = disparity.shape[-1]
    x = torch.arange(w, device=disparity.device, dtype=torch.float32).view(1, 1, w, 1)
    centre = x - disparity.float().permute(0, 2, 3, 1)      # (B, h, w, 1), level-0 pixels
    if batched:
        shift, scale, offsets, last = pyramid.tables()
        positions = (centre - shift) / scale + offsets
        return _interpolate(pyramid.levels, positions, last).permute(0, 3, 1, 2)
    offsets = torch.arange(-radius, radius + 1, device=disparity.device, dtype=torch.float32)
    samples = []
    for level, volume in enumerate(pyramid.levels):
        scale = 2 ** level
        positions = (centre - (scale - 1) / 2) / scale + offsets
        samples.append(sample_linear(volume, positions))
    return torch.cat(samples, dim=-1).permute(0, 3, 1, 2)


class ConvGRU(nn.Module):
    """Convolutional GRU cell: ``(hidden, input) -> hidden``, all ``(B, C, h, w)``."""

    def __init__(self, hidden_dim: int, input_dim: int, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.gates = nn.Conv2d(hidden_dim + input_dim, 2 * hidden_dim, kernel, padding=pad)
        self.candidate = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel, padding=pad)

    def forward(self, hidden: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([hidden, inputs], dim=1)
        z, r = torch.sigmoid(self.gates(hx)).chunk(2, dim=1)
        q = torch.tanh(self.candidate(torch.cat([r * hidden, inputs], dim=1)))
        return (1 - z) * hidden + z * q


class UpdateBlock(nn.Module):
    """One refinement step: correlation samples + disparity + context -> new hidden, delta.

    :meth:`mask` turns a hidden state into convex-upsampling logits ``(B, 9 * factor**2, h, w)``.
    """

    def __init__(self, corr_channels: int, hidden_dim: int, context_dim: int, motion_dim: int,
                 upsample_factor: int = 4):
        super().__init__()
        self.corr_enc = nn.Sequential(nn.Conv2d(corr_channels, motion_dim, 1), nn.ReLU(inplace=True))
        self.disp_enc = nn.Sequential(nn.Conv2d(1, motion_dim // 2, 7, padding=3), nn.ReLU(inplace=True))
        self.motion = nn.Sequential(nn.Conv2d(motion_dim + motion_dim // 2, motion_dim - 1, 3, padding=1),
                                    nn.ReLU(inplace=True))
        self.gru = ConvGRU(hidden_dim, motion_dim + context_dim)
        self.delta_head = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1), nn.ReLU(inplace=True),
                                        nn.Conv2d(hidden_dim, 1, 3, padding=1))
        self.mask_head = nn.Sequential(nn.Conv2d(hidden_dim, 2 * hidden_dim, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(2 * hidden_dim, 9 * upsample_factor ** 2, 1))

    def mask(self, hidden: torch.Tensor) -> torch.Tensor:
        # Scaled down as in RAFT: keeps the initial upsampling weights close to uniform.
        return 0.25 * self.mask_head(hidden)

    def forward(self, hidden, context, corr_features, disparity, extra_corr=None):
        """``extra_corr``: ``(B, motion_dim, h, w)`` added to the encoded correlation (a
        second volume's gated lookups, :mod:`polstereo.models.polarization_volume`)."""
        corr = self.corr_enc(corr_features)
        if extra_corr is not None:
            corr = corr + extra_corr.to(corr.dtype)
        motion = self.motion(torch.cat([corr, self.disp_enc(disparity)], dim=1))
        motion = torch.cat([motion, disparity], dim=1)
        hidden = self.gru(hidden, torch.cat([motion, context], dim=1))
        return hidden, self.delta_head(hidden)
