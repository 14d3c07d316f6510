"""Build a :class:`PolStereoModel` from a plain dict, and save/load models that know their config.

A checkpoint holds ``{"model_config": model_config(model), "state_dict": ...}``; both
are plain types and tensors, so ``torch.load(weights_only=True)`` reads it and
:func:`build_model` rebuilds the exact architecture before ``load_state_dict``.

``model_config`` shape (all keys optional for :func:`build_model`)::

    {"base": {"kind": "builtin", "name": "tiny", "config": {...BaseConfig fields...}}
             | {"kind": "s2m2", "size": "S", "refine_iter": 3, "allow_negative": False,
                "weights": "CH128NTR1.pth"  # only when building, never written back}
             | "tiny" | "small" | "base" | "s2m2-S" ...  (shorthand),
     "correction": {...CorrectionConfig fields...} | True (defaults) | None,
     "max_correction": 4.0,
     "angles_deg": [0.0, 45.0, 90.0, 135.0],
     "base_input": "intensity" | "polarization"}  (what the base matches; early fusion)
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path
from polstereo.models.base.network import MODEL_CONFIGS, BaseStereoNet, create_model
from polstereo.models.base.s2m2 import S2M2Base
from polstereo.models.correction import CorrectionConfig, CorrectionModule
from polstereo.models.full import PolStereoModel
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG

MODEL_FORMAT = "polstereo.model"
MODEL_FORMAT_VERSION = 1
_PAYLOAD_KEYS = ("format", "format_version", "model_config", "state_dict")


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
    return {
        "base": base_cfg,
        "correction": None if model.correction is None else model.correction.config.to_dict(),
        "max_correction": model.max_correction,
        "angles_deg": list(model.angles_deg),
        "base_input": model.base_input,
    }


def _build_base(spec, s2m2_factory: Callable[..., nn.Module] | None) -> nn.Module:
    if isinstance(spec, str):
        match = re.fullmatch(r"s2m2[-:]?(\w*)", spec, flags=re.IGNORECASE)
        spec = {"kind": "s2m2", "size": match.group(1).upper() or "S"} if match else {"kind": "builtin", "name": spec}
    if not isinstance(spec, dict):
        raise PolstereoError(f"model_config 'base' must be a size name or a dict, got {type(spec).__name__}")
    kind = spec.get("kind", "builtin")
    if kind == "builtin":
        _reject_unknown(spec, {"kind", "name", "config"}, "builtin base")
        return create_model(spec.get("name") or "tiny", **(spec.get("config") or {}))
    if kind == "s2m2":
        _reject_unknown(spec, {"kind", "size", "weights", "refine_iter", "allow_negative"}, "s2m2 base")
        return S2M2Base(size=spec.get("size", "S"), weights=spec.get("weights"),
                        refine_iter=spec.get("refine_iter", 3), allow_negative=spec.get("allow_negative", False),
                        factory=s2m2_factory)
    raise PolstereoError(f"unknown base model kind {kind!r}; expected builtin or s2m2")


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
    _reject_unknown(config, {"base", "correction", "max_correction", "angles_deg", "base_input"}, "model")
    base = _build_base(config.get("base", "tiny"), s2m2_factory)
    correction_spec = config.get("correction")
    correction = None
    if correction_spec is True:
        correction = CorrectionModule(CorrectionConfig())
    elif isinstance(correction_spec, dict):
        correction = CorrectionModule(CorrectionConfig.from_dict(correction_spec))
    elif correction_spec not in (None, False):
        raise PolstereoError(f"model_config 'correction' must be a dict, true or null, got {correction_spec!r}")
    return PolStereoModel(base, correction, max_correction=float(config.get("max_correction", 4.0)),
                          angles_deg=config.get("angles_deg", DEFAULT_ANGLES_DEG),
                          base_input=config.get("base_input", "intensity"))


# ---------------------------------------------------------------------------- files
def save_model(path: str | Path, model: PolStereoModel, extra: dict | None = None) -> Path:
    """Write ``{"format", "format_version", "model_config", "state_dict", **extra}`` atomically.

    ``extra`` must hold plain types/tensors only (it is read back with weights_only=True)
    and may not reuse the reserved keys.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_PAYLOAD_KEYS))
    if clash:
        raise ValueError(f"extra may not override reserved key(s): {', '.join(clash)}")
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
               "model_config": model_config(model), "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_payload(path: str | Path, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with one-line :class:`PolstereoError` on failure.

    Checks only that the file is a dict with ``model_config`` and ``state_dict`` (so a
    trainer checkpoint that adds its own keys is a model file too).
    """
    path = Path(path)
    if not path.exists():
        raise PolstereoError(f"model file not found: {path}")
    if not path.is_file():
        raise PolstereoError(f"not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from the weights-only unpickler
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module ..."
        code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if code:
            raise PolstereoError(f"refusing to load {path}: it holds a pickled object ({code.group(1)}) "
                                 "that could run code; polstereo files hold weights only") from None
        raise PolstereoError(f"cannot load {path}: corrupt, or not a PyTorch file") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, bad magic, ...: all mean "unreadable"
        raise PolstereoError(f"cannot load {path}: corrupt, or not a PyTorch file "
                             f"({type(err).__name__})") from None
    if not isinstance(payload, dict) or not {"model_config", "state_dict"} <= set(payload):
        raise PolstereoError(f"{path} is not a polstereo model file (no model_config/state_dict)")
    return payload


def load_model(path: str | Path, map_location="cpu",
               s2m2_factory: Callable[..., nn.Module] | None = None) -> tuple[PolStereoModel, dict]:
    """Rebuild the model a file describes and load its weights (strict). Returns ``(model, payload)``."""
    payload = read_payload(path, map_location)
    model = build_model(payload["model_config"], s2m2_factory)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(first[1:2] or first[:1]).strip()[:200]
        raise PolstereoError(f"{path}: weights do not match its model_config ({detail})") from None
    return model, payload
