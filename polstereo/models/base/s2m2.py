"""The official S2M2 network (``junhong-3dv/s2m2``) behind polstereo's base-model interface.

polstereo neither copies S2M2's code nor ships its weights: the user installs the
package from its public repository and downloads the released weights
(``CH128NTR1.pth`` for S ... ``CH384NTR3.pth`` for XL, stored as
``{"state_dict": ...}``). This module only adapts the calling convention:

- input: our ``(B, C, H, W)`` images in [0, 1] -> 3 channels (mono replicated), scaled
  to 0-255, replicate-padded bottom/right to a multiple of 32;
- output: S2M2 returns ``(disparity, occlusion, confidence)`` maps ``(B, 1, H', W')``
  where its occlusion map is 1 for *visible* pixels and its confidence ~1 where the
  disparity error is small; we crop them back and return ``disparity``,
  ``disparities`` (just the final one), ``confidence`` in [0, 1], ``occlusion`` in
  [0, 1] with **1 = occluded** (polstereo's mask convention) and ``features`` (the
  left 1/4-resolution CNN features when the model exposes them, else None).

The network is built by a *factory* with S2M2's constructor signature
``factory(feature_channels, dim_expansion, num_transformer, use_positivity, refine_iter)``;
the default imports the official class, tests inject a small stand-in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.base.network import check_image_pair, pad_to_multiple, to_rgb

PAD_MULTIPLE = 32
INSTALL_HINT = "pip install git+https://github.com/junhong-3dv/s2m2"

# size -> (feature_channels, num_transformer), as in the released weight names CH{c}NTR{n}.pth
S2M2_SIZES: dict[str, tuple[int, int]] = {"S": (128, 1), "M": (192, 2), "L": (256, 3), "XL": (384, 3)}


def weights_file_name(size: str) -> str:
    """Released weight file name for a size, e.g. ``S`` -> ``CH128NTR1.pth``."""
    channels, transformers = S2M2_SIZES[size]
    return f"CH{channels}NTR{transformers}.pth"


def size_from_weights_name(path: str | Path) -> str | None:
    """The size whose released file name ``path`` carries (``.../CH256NTR3.pth`` -> ``L``), else None."""
    match = re.search(r"CH(\d+)NTR(\d+)", Path(path).name)
    if not match:
        return None
    found = (int(match.group(1)), int(match.group(2)))
    return next((size for size, dims in S2M2_SIZES.items() if dims == found), None)


def official_factory(**kwargs) -> nn.Module:
    """Construct the official ``S2M2`` model; PolstereoError if the package is missing."""
    try:
        from s2m2.core.model.s2m2 import S2M2
    except ImportError as err:
        raise PolstereoError(f"the S2M2 base model needs the official s2m2 package ({err}); "
                             f"install it with: {INSTALL_HINT}") from None
    return S2M2(**kwargs)


def load_s2m2_weights(model: nn.Module, path: str | Path, size: str = "?") -> None:
    """Load released S2M2 weights (``{"state_dict": ...}`` or a bare state dict) into ``model``.

    Extra tensors in the file are ignored (as the official loader does); a tensor the
    model needs that is missing or of another shape is an error, since running with
    random weights would silently give garbage.
    """
    path = Path(path)
    if not path.is_file():
        raise PolstereoError(f"S2M2 weights not found: {path} (expected e.g. {weights_file_name('S')})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise PolstereoError(f"cannot read S2M2 weights {path}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PolstereoError(f"{path} is not an S2M2 weight file (no state_dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise PolstereoError(f"{path.name} does not fit S2M2-{size}: {len(bad)} tensor(s) missing or of "
                             f"another shape (first: {bad[0]}); the file name tells the size "
                             f"({', '.join(f'{weights_file_name(s)} = {s}' for s in S2M2_SIZES)})")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


class S2M2Base(nn.Module):
    """Official S2M2 wrapped as a polstereo base model (see the module docstring).

    Args:
        size: ``S`` | ``M`` | ``L`` | ``XL``; None = read it from the ``weights`` file name.
        weights: released weight file to load (optional: a polstereo checkpoint may
            bring the weights instead).
        refine_iter: S2M2's local refinement iterations (``forward(iters=...)`` overrides).
        allow_negative: let S2M2 output negative disparities (off: clamped at 0).
        factory: builds the wrapped network; default :func:`official_factory`.
    """

    def __init__(self, size: str | None = "S", weights: str | Path | None = None, refine_iter: int = 3,
                 allow_negative: bool = False, factory: Callable[..., nn.Module] | None = None):
        super().__init__()
        if size is None:
            size = size_from_weights_name(weights) if weights is not None else None
            if size is None:
                raise PolstereoError("cannot tell the S2M2 size; give it (S, M, L, XL) or use a released "
                                     "weight file name such as CH128NTR1.pth")
        if size not in S2M2_SIZES:
            raise PolstereoError(f"unknown S2M2 size {size!r}; expected one of {', '.join(S2M2_SIZES)}")
        self.size = size
        self.refine_iter = int(refine_iter)
        self.allow_negative = bool(allow_negative)
        channels, transformers = S2M2_SIZES[size]
        self.model = (factory or official_factory)(
            feature_channels=channels, dim_expansion=1, num_transformer=transformers,
            use_positivity=not allow_negative, refine_iter=self.refine_iter)
        if weights is not None:
            load_s2m2_weights(self.model, weights, size)
        self._left_features: torch.Tensor | None = None
        backbone = getattr(self.model, "cnn_backbone", None)
        if isinstance(backbone, nn.Module):
            backbone.register_forward_hook(self._keep_left_features)

    def _keep_left_features(self, module, inputs, output) -> None:
        # S2M2's backbone runs on cat([left, right]) and returns (features at 1/4, features at 1/2).
        first = output[0] if isinstance(output, (tuple, list)) else output
        self._left_features = first.chunk(2, dim=0)[0]

    def config_dict(self) -> dict:
        """Plain-dict description for checkpoints (weights travel in the state dict)."""
        return {"kind": "s2m2", "size": self.size, "refine_iter": self.refine_iter,
                "allow_negative": self.allow_negative}

    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                all_estimates: bool | None = None) -> dict:
        """``all_estimates`` is accepted for interface parity; S2M2 exposes only its final estimate."""
        check_image_pair(left, right)
        h, w = left.shape[-2:]
        left_in = pad_to_multiple(to_rgb(left), PAD_MULTIPLE) * 255.0
        right_in = pad_to_multiple(to_rgb(right), PAD_MULTIPLE) * 255.0
        self.model.refine_iter = self.refine_iter if iters is None else int(iters)
        self._left_features = None
        disparity, visible, confidence = self.model(left_in, right_in)
        disparity = disparity[..., :h, :w].to(left.dtype)
        if not self.allow_negative:
            disparity = disparity.clamp_min(0.0)
        features = self._left_features
        if features is not None:
            features = features[..., :-(-h // 4), :-(-w // 4)]
        self._left_features = None
        return {
            "disparity": disparity,
            "disparities": [disparity],
            "features": features,
            "confidence": confidence[..., :h, :w].to(left.dtype).clamp(0.0, 1.0),
            "occlusion": (1.0 - visible[..., :h, :w].to(left.dtype)).clamp(0.0, 1.0),
        }
