"""Training checkpoints: a model file plus everything a run needs to continue.

A checkpoint is a :func:`polstereo.models.registry.save_model` payload (model config
and weights, so ``polstereo infer`` and ``eval`` read it directly) with these extra
keys, all plain values or tensors (loaded with ``weights_only=True``)::

    checkpoint_version  int
    stage               "A" | "B" | "C"
    lineage             [{stage, command, init, train, dataset_steps, val, steps, steps_done,
                          complete, metrics, finished_at}, ...]   every stage so far, oldest first
    train_config        the options of the run that wrote it
    step                optimisation steps done in this run
    optimizer, scheduler, scaler   their state dicts
    rng                 {"torch": ByteTensor, "cuda": [ByteTensor, ...]}
    val_metrics, best_score
    digest              "sha256:<hex>" over everything else in the file (see :func:`payload_digest`)

The digest is checked on every load through this module (training ``--init`` and
``--resume``, ``eval``, ``infer``, ``export``): a file whose weights or config changed
after it was written is refused. Files written before digests existed load with a
one-line note on stderr.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path
from polstereo.models.registry import (MODEL_FORMAT, MODEL_FORMAT_VERSION, build_model, model_config,
                                       read_payload)

CHECKPOINT_VERSION = 1
DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"
_RESERVED = ("format", "format_version", "model_config", "state_dict", DIGEST_KEY)
_noted_without_digest: set[str] = set()


# ---------------------------------------------------------------------------- integrity digest
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


# ---------------------------------------------------------------------------- files
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


def save_checkpoint(path: str | Path, model, **state: Any) -> Path:
    """Write a checkpoint atomically: the model's config and weights, ``state``, and a digest."""
    clash = sorted(set(state) & set(_RESERVED))
    if clash:
        raise ValueError(f"state may not override reserved key(s): {', '.join(clash)}")
    return write_payload(path, {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                                "model_config": model_config(model), "state_dict": model.state_dict(),
                                "checkpoint_version": CHECKPOINT_VERSION, **state})


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The payload of a model or checkpoint file (``weights_only=True``), digest and structure checked."""
    payload = read_payload(path, map_location)
    verify_digest(payload, path)
    check_payload(payload, path)
    return payload


def model_from_payload(payload: dict, path: str | Path):
    """Rebuild the model a payload describes and load its weights (strict); one-line errors."""
    try:
        model = build_model(payload["model_config"])
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


def load_model_checked(path: str | Path, map_location="cpu"):
    """``(model, payload)`` like :func:`polstereo.models.registry.load_model`, digest and structure checked."""
    payload = load_checkpoint(path, map_location)
    return model_from_payload(payload, path), payload


def lineage_stages(payload: dict) -> list[str]:
    """The stage names recorded in a payload's lineage, oldest first."""
    return [entry.get("stage") for entry in payload.get("lineage", [])]


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
