"""Model names, and building a :class:`PolStereoModel` from a plain dict that describes it.

:func:`model_config` describes a model in plain types; :func:`build_model` rebuilds the
exact architecture from that description (model files, :mod:`polstereo.models.files`,
store it beside the weights).

``model_config`` shape (all keys optional for :func:`build_model`)::

    {"base": {"kind": "builtin", "name": "tiny", "config": {...BaseConfig fields...}}
             | {"kind": "s2m2", "size": "S", "refine_iter": 3, "allow_negative": False,
                "input_encoding": "srgb" | "linear",  # absent: "linear" (older checkpoints)
                "weights": "CH128NTR1.pth"  # only when building, never written back}
             | "tiny" | "small" | "base" | "s2m2" | "s2m2-S" ...  (a model name, :data:`MODEL_NAMES`),
     "correction": {...CorrectionConfig fields...} | True (defaults) | None,
     "max_correction": 4.0,
     "angles_deg": [0.0, 45.0, 90.0, 135.0],
     "base_input": "intensity" | "polarization" | "polarization-adapter" | "polarization-volume",
        (what the base matches: early fusion, or the intensity plus an adapter's residual,
         whose weights are the state dict's ``adapter.*``, or the intensity with a second,
         polarization correlation volume in the base, ``base.polarization.*``; absent: "intensity")
     "polarization_volume": {...PolarizationVolumeConfig fields...}}
        (only with base_input "polarization-volume"; absent: the defaults)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.base.network import MODEL_CONFIGS, BaseStereoNet, create_model
from polstereo.models.base import s2m2
from polstereo.models.base.s2m2 import S2M2Base
from polstereo.models.correction import CorrectionConfig, CorrectionModule
from polstereo.models.full import DEFAULT_MAX_CORRECTION, PolStereoModel
from polstereo.models.polarization_volume import PolarizationVolumeConfig
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG


# ---------------------------------------------------------------------------- config <-> model
def _base_name(base: BaseStereoNet) -> str | None:
    return next((name for name, cfg in MODEL_CONFIGS.items() if cfg == base.config), None)


def model_config(model: PolStereoModel) -> dict:
    """The plain-dict config that :func:`build_model` turns back into ``model``'s architecture."""
    base = model.base
    if not hasattr(base, "config_dict"):
        raise TypeError(f"base model {type(base).__name__} has no config_dict(); cannot describe it")
    base_cfg = base.config_dict()
    if isinstance(base, BaseStereoNet):
        base_cfg = {"kind": "builtin", "name": _base_name(base), **{k: v for k, v in base_cfg.items() if k != "kind"}}
    config = {
        "base": base_cfg,
        "correction": None if model.correction is None else model.correction.config.to_dict(),
        "max_correction": model.max_correction,
        "angles_deg": list(model.angles_deg),
        "base_input": model.base_input,
    }
    if model.polarization_volume is not None:
        config["polarization_volume"] = model.polarization_volume.config.to_dict()
    return config


# ---------------------------------------------------------------------------- base models
@dataclass(frozen=True)
class BaseKind:
    """One kind of base model: the spec keys it takes (besides ``kind``) and how it is built."""

    options: tuple[str, ...]
    build: Callable[[dict, Callable[..., nn.Module] | None], nn.Module]


BASE_KINDS: dict[str, BaseKind] = {
    "builtin": BaseKind(("name", "config"),
                        lambda spec, _factory: create_model(spec.get("name") or "tiny", **(spec.get("config") or {}))),
    "s2m2": BaseKind(s2m2.SPEC_OPTIONS, S2M2Base.from_spec),
}

# Every name a model may be given by (``--model``, ``"base": NAME``) -> its base spec.
# The plain "s2m2" is the default size; names match ignoring case and "-", ":" (see base_spec).
_S2M2_NAMES = {f"s2m2-{size}": {"kind": "s2m2", "size": size, "input_encoding": s2m2.DEFAULT_INPUT_ENCODING}
               for size in s2m2.S2M2_SIZES}
MODEL_NAMES: dict[str, dict] = {
    **{name: {"kind": "builtin", "name": name} for name in MODEL_CONFIGS},
    "s2m2": _S2M2_NAMES[f"s2m2-{s2m2.DEFAULT_SIZE}"],
    **_S2M2_NAMES,
}


def _name_key(name: str) -> str:
    return re.sub(r"[\s:_-]", "", name).lower()


def base_spec(name: str) -> dict:
    """The base spec (a new dict) a model name stands for: ``"small"`` ->
    ``{"kind": "builtin", "name": "small"}``; ``"s2m2"``, ``"s2m2-L"`` (also ``S2M2:l``) ->
    ``{"kind": "s2m2", "size": "S" | "L", "input_encoding": "srgb"}``.

    Raises :class:`PolstereoError` (one line, listing the names) for an unknown name.
    """
    if not isinstance(name, str):
        raise PolstereoError(f"a model name must be text, got {type(name).__name__}")
    by_key = {_name_key(known): spec for known, spec in MODEL_NAMES.items()}
    spec = by_key.get(_name_key(name))
    if spec is None:
        what = "S2M2 size" if _name_key(name).startswith("s2m2") else "base model size"
        raise PolstereoError(f"unknown {what} {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return dict(spec)


def base_name(spec: dict | str) -> str:
    """The canonical model name of a base spec (``s2m2-S``, ``tiny``), or ``custom`` for a
    built-in base of no named size. Inverse of :func:`base_spec` on the kind and size."""
    if isinstance(spec, str):
        spec = base_spec(spec)
    if spec.get("kind") == "s2m2":
        return f"s2m2-{spec.get('size', s2m2.DEFAULT_SIZE)}"
    return spec.get("name") or "custom"


def _build_base(spec, s2m2_factory: Callable[..., nn.Module] | None) -> nn.Module:
    if isinstance(spec, str):
        spec = base_spec(spec)
    if not isinstance(spec, dict):
        raise PolstereoError(f"model_config 'base' must be a size name or a dict, got {type(spec).__name__}")
    kind = spec.get("kind", "builtin")
    entry = BASE_KINDS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise PolstereoError(f"unknown base model kind {kind!r}; expected one of {', '.join(BASE_KINDS)}")
    _reject_unknown(spec, {"kind", *entry.options}, f"{kind} base")
    return entry.build(spec, s2m2_factory)


def _reject_unknown(spec: dict, known: set[str], what: str) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise PolstereoError(f"unknown {what} option(s): {', '.join(unknown)}")


def build_model(config: dict, s2m2_factory: Callable[..., nn.Module] | None = None) -> PolStereoModel:
    """A fresh (randomly initialised, or S2M2-weighted) model from a ``model_config`` dict.

    ``s2m2_factory`` replaces the official S2M2 constructor (tests, custom builds).
    """
    if not isinstance(config, dict):
        raise PolstereoError(f"model_config must be a dict, got {type(config).__name__}")
    _reject_unknown(config, {"base", "correction", "max_correction", "angles_deg", "base_input",
                             "polarization_volume"}, "model")
    base = _build_base(config.get("base", "tiny"), s2m2_factory)
    correction_spec = config.get("correction")
    correction = None
    if correction_spec is True:
        correction = CorrectionModule(CorrectionConfig())
    elif isinstance(correction_spec, dict):
        correction = CorrectionModule(CorrectionConfig.from_dict(correction_spec))
    elif correction_spec not in (None, False):
        raise PolstereoError(f"model_config 'correction' must be a dict, true or null, got {correction_spec!r}")
    volume_spec = config.get("polarization_volume")
    if volume_spec is not None and not isinstance(volume_spec, dict):
        raise PolstereoError(f"model_config 'polarization_volume' must be a dict, got {volume_spec!r}")
    return PolStereoModel(base, correction, max_correction=float(config.get("max_correction", DEFAULT_MAX_CORRECTION)),
                          angles_deg=config.get("angles_deg", DEFAULT_ANGLES_DEG),
                          base_input=config.get("base_input", "intensity"),
                          polarization_volume=None if volume_spec is None
                          else PolarizationVolumeConfig.from_dict(volume_spec))
