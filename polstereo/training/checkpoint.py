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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polstereo.errors import PolstereoError
from polstereo.models.registry import load_model, read_payload, save_model

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model, **state: Any) -> Path:
    """Write a checkpoint atomically (the model's own config and weights plus ``state``)."""
    return save_model(path, model, extra={"checkpoint_version": CHECKPOINT_VERSION, **state})


def load_checkpoint(path: str | Path) -> dict:
    """The payload of a model or checkpoint file (``weights_only=True``)."""
    payload = read_payload(path)
    version = payload.get("checkpoint_version", CHECKPOINT_VERSION)
    if version > CHECKPOINT_VERSION:
        raise PolstereoError(f"{path}: checkpoint version {version} is newer than this polstereo reads; upgrade")
    return payload


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
    model, payload = load_model(path, map_location=map_location)
    if use_ema:
        if "ema_state_dict" not in payload:
            raise PolstereoError(f"{path}: has no EMA teacher (it was trained without --mask-ratio or --ema-decay)")
        model.load_state_dict(payload["ema_state_dict"], strict=True)
    return model, payload
