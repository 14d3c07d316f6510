"""Training checkpoints: a model file plus everything a run needs to continue.

A checkpoint is a :func:`polstereo.models.files.save_model` payload (model config
and weights, so ``polstereo infer`` and ``eval`` read it directly) with these extra
keys, all plain values or tensors (loaded with ``weights_only=True``)::

    checkpoint_version  int
    stage               "A" | "B" | "C"
    lineage             [{stage, command, init, train, dataset_steps, val, steps, steps_done,
                          complete, metrics, finished_at}, ...]   every stage so far, oldest first
    train_config        the options of the run that wrote it (TrainConfig.plain: nested by section;
                        flat, keyed by long option name, in files written before the sections)
    step                optimisation steps done in this run
    optimizer, scheduler, scaler   their state dicts
    rng                 {"torch": ByteTensor, "cuda": [ByteTensor, ...]}
    val_metrics, best_score
    digest              "sha256:<hex>" over everything else in the file (see :func:`payload_digest`)

The digest is checked on every load (training ``--init`` and ``--resume``, ``eval``,
``infer``, ``export``), by the model-file functions of :mod:`polstereo.models.files`
that this module re-exports: a file whose weights or config changed after it was
written is refused. Files written before digests existed load with a one-line note on
stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polstereo.models.files import (_PAYLOAD_KEYS, CHECKPOINT_VERSION, DIGEST_KEY, MODEL_FORMAT, MODEL_FORMAT_VERSION,
                                    check_payload, load_checkpoint, load_for_inference, load_model_checked,
                                    model_from_payload, payload_digest, verify_digest, write_payload)
from polstereo.models.registry import model_config

_RESERVED = (*_PAYLOAD_KEYS, DIGEST_KEY)
__all__ = ["CHECKPOINT_VERSION", "DIGEST_KEY", "check_payload", "lineage_stages", "load_checkpoint",
           "load_for_inference", "load_model_checked", "model_from_payload", "payload_digest", "restore_rng",
           "rng_state", "save_checkpoint", "verify_digest", "write_payload"]  # the model-file names: re-exported


def save_checkpoint(path: str | Path, model, **state: Any) -> Path:
    """Write a checkpoint atomically: the model's config and weights, ``state``, and a digest."""
    clash = sorted(set(state) & set(_RESERVED))
    if clash:
        raise ValueError(f"state may not override reserved key(s): {', '.join(clash)}")
    return write_payload(path, {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                                "model_config": model_config(model), "state_dict": model.state_dict(),
                                "checkpoint_version": CHECKPOINT_VERSION, **state})


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


