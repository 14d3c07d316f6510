#!/usr/bin/env bash
# Fine-tune the GPU-trained small (models/polstereo-small.ckpt) on the CPU, with polarization or
# intensity only, on make-synthetic's default data with generic scenes mixed in (stage A).
# Usage: scripts/warm_start_small.sh WORK_DIR [BASE_INPUT]
#   BASE_INPUT: polarization-adapter (default: a zero-initialised polarization adapter, step 0 = the
#   base exactly), intensity (the control: the same run without polarization) or polarization (the
#   channel-replacing early fusion). Everything else is the same for every BASE_INPUT: data, steps,
#   seed, crops, so the difference between two runs is what polarization gives.
# Env: STEPS (1000), GENERIC_SHARE (percent of steps drawing generic scenes, 30), LR (2e-4), BATCH (4),
#   CROP ("128 160"), SEED (0), INIT (models/polstereo-small.ckpt), DATA (WORK_DIR/data, shared by the
#   runs), A_ARGS (extra adapt options). Resumable: re-run the same command after a stop.
set -euo pipefail
WORK=${1:?usage: scripts/warm_start_small.sh WORK_DIR [BASE_INPUT]}
BASE_INPUT=${2:-polarization-adapter}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/training_options.sh"
STEPS=${STEPS:-1000}; GENERIC_SHARE=${GENERIC_SHARE:-30}; LR=${LR:-2e-4}; SEED=${SEED:-0}
INIT=${INIT:-$HERE/../models/polstereo-small.ckpt}
DATA=${DATA:-$WORK/data}
DATA_ONLY=1 bash "$HERE/train_default_model.sh" "$DATA"
GENERIC=$(( STEPS * GENERIC_SHARE / 100 ))
INPUT=(); [ "$BASE_INPUT" = intensity ] || INPUT=(--base-input "$BASE_INPUT")
run_stage "$WORK/$BASE_INPUT" polstereo adapt --init "$INIT" ${INPUT[@]+"${INPUT[@]}"} \
    --train "$DATA/generic/train.h5" --train "$DATA/glass/train.h5" --dataset-steps "$GENERIC" \
    --dataset-steps "$((STEPS - GENERIC))" --dataset-order shuffle --val "$DATA/glass/val.h5" \
    --steps "$STEPS" --lr "$LR" --warmup-steps "$(( STEPS / 20 ))" --seed "$SEED" \
    --crop-size $CROP --batch-size "$BATCH" --workers "$WORKERS" --device "$DEVICE" --quiet \
    --val-every "$(( STEPS / 4 ))" --save-every 100 --val-samples 20 --scale-range 0.8 1.25 \
    ${A_EXTRA[@]+"${A_EXTRA[@]}"}
echo "done: $WORK/$BASE_INPUT/last.ckpt"
