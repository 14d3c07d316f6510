"""The official S2M2 network (``junhong-3dv/s2m2``) behind polstereo's base-model interface.

Only the calling convention is adapted; the user installs S2M2 and downloads its released
weights (CC BY-NC 4.0, non-commercial, unlike polstereo's MIT).

- input: ``(B, C, H, W)`` in [0, 1], *linear* in radiance -> 3 channels (mono
  replicated), replicate-padded bottom/right to a multiple of 32, sRGB-encoded
  (``input_encoding="srgb"``, the default; ``"linear"`` skips it) and scaled to 0-255;
- output: ``disparity`` ``(B, 1, H, W)`` in px and ``disparities`` ``[disparity]``;
  ``confidence`` and ``occlusion`` ``(B, 1, H, W)`` in [0, 1], occlusion **1 = occluded**
  (S2M2's own map is 1 = visible); ``features``, the left 1/4-resolution CNN features
  (None when the model has none).

The network comes from a *factory* with S2M2's constructor signature
``factory(feature_channels, dim_expansion, num_transformer, use_positivity, refine_iter)``;
the default imports the official class, tests inject a small stand-in. Weights, licence,
the sRGB input and fixed-size export (:attr:`S2M2Base.export_fixed_size`):
docs/models.md#official-s2m2-as-the-base-polstereomodelsbases2m2py.
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
DEFAULT_SIZE = "S"
LICENSE = "CC BY-NC 4.0 (non-commercial)"

# How polstereo's linear [0, 1] images become the 0-255 values S2M2 takes.
INPUT_ENCODINGS = ("srgb", "linear")
DEFAULT_INPUT_ENCODING = "srgb"
# What a stored model_config without "input_encoding" was trained with: before the key
# existed the wrapper scaled linear values straight to 0-255.
LEGACY_INPUT_ENCODING = "linear"
# The keys of an s2m2 base spec besides "kind" (see polstereo/models/registry.py);
# "weights" is only read when building and never written back.
SPEC_OPTIONS = ("size", "weights", "refine_iter", "allow_negative", "input_encoding")

_SRGB_LINEAR_LIMIT = 0.0031308  # below it the sRGB curve is the straight line 12.92 x


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB encoding of linear values, elementwise, differentiable.

    ``12.92 x`` for ``x <= 0.0031308``, else ``1.055 x^(1/2.4) - 0.055``; maps [0, 1] onto
    [0, 1] (0 -> 0, 0.18 -> 0.4614, 1 -> 1). Values outside [0, 1] follow the same
    formulas (negative ones the straight line), so nothing is clipped. The power branch
    sees its argument clamped to the threshold, so its gradient stays finite at 0.
    """
    curve = 1.055 * linear.clamp_min(_SRGB_LINEAR_LIMIT).pow(1.0 / 2.4) - 0.055
    return torch.where(linear <= _SRGB_LINEAR_LIMIT, 12.92 * linear, curve)


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


def looks_like_s2m2_weights(payload, path: str | Path) -> bool:
    """Whether a loaded file is (probably) released S2M2 weights rather than a polstereo file:
    no ``model_config``, and a released file name or S2M2's ``cnn_backbone`` tensors."""
    if not isinstance(payload, dict) or "model_config" in payload:
        return False
    state = payload.get("state_dict", payload)
    keys = state.keys() if isinstance(state, dict) else ()
    return size_from_weights_name(path) is not None or any(
        isinstance(k, str) and k.removeprefix("module.").startswith("cnn_backbone.") for k in keys)


def official_factory(**kwargs) -> nn.Module:
    """Construct the official ``S2M2`` model; PolstereoError if the package is missing."""
    try:
        from s2m2.core.model.s2m2 import S2M2
    except ImportError as err:
        raise PolstereoError(f"the S2M2 base model needs the official s2m2 package ({err}); "
                             f"install it with: {INSTALL_HINT}") from None
    return S2M2(**kwargs)


def read_s2m2_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a released S2M2 weight file (``{"state_dict": ...}`` or a bare state
    dict; a ``module.`` prefix dropped), read with ``weights_only=True``.

    A polstereo checkpoint (it carries a ``model_config``) is refused with the right usage:
    it brings its own architecture, so it is given as ``--init`` without ``--model``.
    """
    path = Path(path)
    if not path.is_file():
        raise PolstereoError(f"S2M2 weights not found: {path} (expected e.g. {weights_file_name('S')})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise PolstereoError(f"cannot read S2M2 weights {path}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None
    if isinstance(payload, dict) and "model_config" in payload:
        raise PolstereoError(f"{path} is a polstereo checkpoint, not official S2M2 weights: give it as --init "
                             "without --model (it carries its own model config)")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PolstereoError(f"{path} is not an S2M2 weight file (no state_dict of tensors)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_s2m2_weights(model: nn.Module, path: str | Path, size: str = "?",
                      state: dict[str, torch.Tensor] | None = None) -> None:
    """Load released S2M2 weights (``path``, or ``state`` already read from it) into ``model``.

    Extra tensors in the file are ignored (as the official loader does); a tensor the
    model needs that is missing or of another shape is an error, since running with
    random weights would silently give garbage.
    """
    state = read_s2m2_weights(path) if state is None else state
    expected = model.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise PolstereoError(f"{Path(path).name} does not fit S2M2-{size}: {len(bad)} tensor(s) missing or of "
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
        input_encoding: ``"srgb"`` (default) encodes the linear input with :func:`srgb_encode`
            before scaling to 0-255, as S2M2's 8-bit training images were; ``"linear"`` scales
            it as it is (what polstereo did before; checkpoints of that time keep it).
        factory: builds the wrapped network; default :func:`official_factory`.
    """

    # S2M2's code turns the input size into constants when traced (``torch.tensor(img.shape[-1])`` in its
    # ``bilinear_sampler``), so an exported graph holds for one size: docs/models.md, "Export is at a fixed size".
    export_fixed_size = True

    def __init__(self, size: str | None = DEFAULT_SIZE, weights: str | Path | None = None, refine_iter: int = 3,
                 allow_negative: bool = False, input_encoding: str = DEFAULT_INPUT_ENCODING,
                 factory: Callable[..., nn.Module] | None = None):
        super().__init__()
        if input_encoding not in INPUT_ENCODINGS:
            raise PolstereoError(f"unknown S2M2 input_encoding {input_encoding!r}; expected one of "
                                 f"{', '.join(INPUT_ENCODINGS)}")
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
        self.input_encoding = input_encoding
        # Read the weights before building: a wrong file is told apart without the package.
        state = read_s2m2_weights(weights) if weights is not None else None
        channels, transformers = S2M2_SIZES[size]
        self.model = (factory or official_factory)(
            feature_channels=channels, dim_expansion=1, num_transformer=transformers,
            use_positivity=not allow_negative, refine_iter=self.refine_iter)
        if weights is not None:
            load_s2m2_weights(self.model, weights, size, state)
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
                "allow_negative": self.allow_negative, "input_encoding": self.input_encoding}

    @classmethod
    def from_spec(cls, spec: dict, factory: Callable[..., nn.Module] | None = None) -> "S2M2Base":
        """Build from an s2m2 base spec (the keys in :data:`SPEC_OPTIONS`, all optional).

        A spec without ``input_encoding`` is either a stored ``model_config`` from before the
        key existed (-> :data:`LEGACY_INPUT_ENCODING`, what it was trained with) or, when it
        names released ``weights`` (never stored), a fresh start from them (-> the default).
        """
        legacy = DEFAULT_INPUT_ENCODING if spec.get("weights") is not None else LEGACY_INPUT_ENCODING
        return cls(size=spec.get("size", DEFAULT_SIZE), weights=spec.get("weights"),
                   refine_iter=spec.get("refine_iter", 3), allow_negative=spec.get("allow_negative", False),
                   input_encoding=spec.get("input_encoding", legacy), factory=factory)

    def to_network_input(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1|3, H, W)`` linear [0, 1] -> ``(B, 3, H', W')`` in S2M2's 0-255 (H', W' padded to 32)."""
        image = pad_to_multiple(to_rgb(image), PAD_MULTIPLE)
        if self.input_encoding == "srgb":
            image = srgb_encode(image)
        return image * 255.0

    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                all_estimates: bool | None = None) -> dict:
        """``all_estimates`` is accepted for interface parity; S2M2 exposes only its final estimate."""
        check_image_pair(left, right)
        h, w = left.shape[-2:]
        left_in, right_in = self.to_network_input(left), self.to_network_input(right)
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
