"""Strip a training checkpoint down to what inference needs (for shipping a model).

Keeps the model config and weights, the stage, lineage, validation metrics and the EMA
teacher; drops optimizer, scheduler, grad-scaler and RNG states. The result still loads
with ``polstereo.models.registry.load_model`` (weights_only=True).
Usage: python scripts/slim_checkpoint.py IN.ckpt OUT.ckpt
"""

from __future__ import annotations

import sys

from polstereo.models.registry import load_model, save_model

KEEP = ("stage", "lineage", "val_metrics", "feasibility", "ema_state_dict", "ema_decay", "train_config",
        "checkpoint_version")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    model, payload = load_model(sys.argv[1])
    save_model(sys.argv[2], model, extra={k: payload[k] for k in KEEP if k in payload})


if __name__ == "__main__":
    main()
