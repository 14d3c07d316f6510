"""The model file: a checksummed payload that knows its config, and every way of reading it.

A model file holds ``{"format", "format_version", "model_config", "state_dict", "digest"}``
(the config as :func:`polstereo.models.registry.model_config` describes it); all are plain
types and tensors, so ``torch.load(weights_only=True)`` reads it and
:func:`polstereo.models.registry.build_model` rebuilds the exact architecture before
``load_state_dict``. Every file gets a SHA-256 digest over its content when written
(:func:`write_payload`), checked on every load (:func:`load_model`,
:func:`load_for_inference`): a file whose weights or config changed after it was written is
refused. A file holding pickled code is refused, never run. Training checkpoints
(:mod:`polstereo.training.checkpoint`) are such files with the run's state added. Every
error a user can cause with a model file is a one-line :class:`PolstereoError`.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path
from polstereo.models.base import s2m2
from polstereo.models.full import PolStereoModel
from polstereo.models.registry import build_model, model_config

MODEL_FORMAT = "polstereo.model"
MODEL_FORMAT_VERSION = 1
_PAYLOAD_KEYS = ("format", "format_version", "model_config", "state_dict")
CHECKPOINT_VERSION = 1  # of the training keys a checkpoint adds (polstereo.training.checkpoint)
DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"
_noted_without_digest: set[str] = set()


# ---------------------------------------------------------------------------- writing and reading
def save_model(path: str | Path, model: PolStereoModel, extra: dict | None = None) -> Path:
    """Write ``{"format", "format_version", "model_config", "state_dict", **extra}`` atomically,
    with its integrity digest.

    ``extra`` must hold plain types/tensors only (it is read back with weights_only=True)
    and may not reuse the reserved keys.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & {*_PAYLOAD_KEYS, DIGEST_KEY})
    if clash:
        raise ValueError(f"extra may not override reserved key(s): {', '.join(clash)}")
    return write_payload(path, {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                                "model_config": model_config(model), "state_dict": model.state_dict(), **extra})


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
        hint = ""
        if s2m2.looks_like_s2m2_weights(payload, path):
            hint = ("; it looks like official S2M2 weights, which the training commands take with "
                    f"--model s2m2-{s2m2.size_from_weights_name(path) or 'S|M|L|XL'}")
        raise PolstereoError(f"{path} is not a polstereo model file (no model_config/state_dict){hint}")
    return payload


# ---------------------------------------------------------------------------- integrity digest and structure
def payload_digest(payload: dict) -> str:
    """``"sha256:<hex>"`` over every entry of ``payload`` but the digest itself.

    Canonical: dict entries in sorted key order, each value tagged with its type;
    tensors as dtype, shape and their raw bytes (C order). The same payload read back
    with ``torch.load(weights_only=True)`` gives the same digest.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return f"{DIGEST_ALGORITHM}:{h.hexdigest()}"


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", errors="surrogatepass")
        h.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bytes):
        h.update(f"Y{len(value)}|".encode() + value)
    elif isinstance(value, bool) or value is None:
        h.update(f"B{value}|".encode())
    elif isinstance(value, int):
        h.update(f"I{value}|".encode())
    elif isinstance(value, float):
        h.update(f"F{value.hex() if math.isfinite(value) else value}|".encode())
    else:  # whatever else weights_only lets through (torch.dtype, torch.device, ...): its text
        h.update(f"O{type(value).__name__}:{value!r}|".encode())


def verify_digest(payload: dict, path: str | Path) -> None:
    """Refuse a payload whose stored digest does not match its content (PolstereoError).

    A payload without a digest (written before polstereo stored one) passes; a training
    checkpoint of that age gets a one-line note on stderr, once per file.
    """
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        if "checkpoint_version" in payload and str(path) not in _noted_without_digest:
            _noted_without_digest.add(str(path))
            print(f"note: {path} has no integrity digest (written by an older polstereo); "
                  "its weights cannot be checked", file=sys.stderr)
        return
    if not isinstance(stored, str) or not stored.startswith(f"{DIGEST_ALGORITHM}:"):
        raise PolstereoError(f"{path}: malformed integrity digest; the file is corrupt")
    if payload_digest(payload) != stored:
        raise PolstereoError(f"{path}: integrity check failed (the SHA-256 digest of its weights and config does "
                             "not match the one stored when it was written); the file is corrupt or was modified")


def check_payload(payload: dict, path: str | Path) -> None:
    """One-line errors for structure a checkpoint must have: a sane lineage and stage."""
    lineage = payload.get("lineage", [])
    if not isinstance(lineage, list) or not all(isinstance(e, dict) and isinstance(e.get("stage"), str)
                                                for e in lineage):
        raise PolstereoError(f"{path}: malformed lineage (expected a list of records with a stage name); "
                             "the file is corrupt or was not written by polstereo")
    if "stage" in payload and not isinstance(payload["stage"], str):
        raise PolstereoError(f"{path}: malformed stage {payload['stage']!r}")
    version = payload.get("checkpoint_version", CHECKPOINT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise PolstereoError(f"{path}: malformed checkpoint_version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise PolstereoError(f"{path}: checkpoint version {version} is newer than this polstereo reads; upgrade")


# ---------------------------------------------------------------------------- writing with a digest, checked loading
def write_payload(path: str | Path, payload: dict) -> Path:
    """Write a model/checkpoint payload atomically, with its digest (replacing any stored one)."""
    payload = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    payload[DIGEST_KEY] = payload_digest(payload)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as err:
        # torch's zip writer reports a full disk as "[enforce fail at inline_container.cc] unexpected pos"
        try:
            full = shutil.disk_usage(path.parent).free < 2**20
        except OSError:
            full = False
        reason = "no space left on device" if full else " ".join(str(err).split())[:160]
        raise PolstereoError(f"{path}: cannot write ({reason}); nothing was left under that name") from None
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The payload of a model or checkpoint file (``weights_only=True``), digest and structure checked."""
    payload = read_payload(path, map_location)
    verify_digest(payload, path)
    check_payload(payload, path)
    return payload


def model_from_payload(payload: dict, path: str | Path, s2m2_factory: Callable[..., nn.Module] | None = None):
    """Rebuild the model a payload describes and load its weights (strict); one-line errors."""
    try:
        model = build_model(payload["model_config"], s2m2_factory)
    except PolstereoError as err:
        raise PolstereoError(f"{path}: {err}", err.exit_code) from None
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as err:
        detail = " ".join(str(err).split())[:160]
        raise PolstereoError(f"{path}: its model_config cannot be built ({type(err).__name__}: {detail})") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(first[1:2] or first[:1]).strip()[:200]
        raise PolstereoError(f"{path}: weights do not match its model_config ({detail})") from None
    return model


def load_model(path: str | Path, map_location="cpu",
               s2m2_factory: Callable[..., nn.Module] | None = None) -> tuple[PolStereoModel, dict]:
    """Rebuild the model a file describes and load its weights (strict), digest and
    structure checked. Returns ``(model, payload)``."""
    payload = load_checkpoint(path, map_location)
    return model_from_payload(payload, path, s2m2_factory), payload


load_model_checked = load_model  # the name the training code knew it by


def load_for_inference(path: str | Path, use_ema: bool = False, map_location="cpu"):
    """``(model, payload)`` from a model or checkpoint file; ``use_ema`` takes the EMA teacher's weights."""
    model, payload = load_model_checked(path, map_location=map_location)
    if use_ema:
        if "ema_state_dict" not in payload:
            raise PolstereoError(f"{path}: has no EMA teacher (it was trained without --mask-ratio or --ema-decay)")
        try:
            model.load_state_dict(payload["ema_state_dict"], strict=True)
        except (RuntimeError, TypeError, AttributeError, ValueError) as err:
            detail = " ".join(str(err).split())[:160]
            raise PolstereoError(f"{path}: EMA teacher weights do not match its model_config ({detail})") from None
    return model, payload
