"""Strip a training checkpoint down to what inference needs (for shipping a model).

Keeps the model config and weights, the stage, lineage, validation metrics and the EMA
teacher; drops optimizer, scheduler, grad-scaler and RNG states. The input's integrity
digest is checked and the result gets its own. The result still loads with
``polstereo.models.files.load_model`` (weights_only=True).
Usage: python scripts/slim_checkpoint.py IN.ckpt OUT.ckpt
"""

from __future__ import annotations

import sys

from polstereo.errors import PolstereoError
from polstereo.models.files import MODEL_FORMAT, MODEL_FORMAT_VERSION
from polstereo.training.checkpoint import load_checkpoint, model_from_payload, write_payload

KEEP = ("stage", "lineage", "val_metrics", "feasibility", "ema_state_dict", "ema_decay", "train_config",
        "checkpoint_version")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    try:
        payload = load_checkpoint(sys.argv[1])
        model_from_payload(payload, sys.argv[1])  # the weights must fit the config they ship with
        slim = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                "model_config": payload["model_config"], "state_dict": payload["state_dict"],
                **{k: payload[k] for k in KEEP if k in payload}}
        write_payload(sys.argv[2], slim)
    except PolstereoError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
