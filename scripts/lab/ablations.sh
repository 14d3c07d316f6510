#!/usr/bin/env bash
# The ablations of docs/notebook/2026-11-23-first-tiny-and-ablations.md, on the work directory of scripts/train_default_model.sh:
#  1. joint training (finetune) straight from the generic base, no stage A, same total steps as A + B + C;
#  2. stage B with the predicted instead of the ground-truth warp, same steps as B.
# Usage: scripts/lab/ablations.sh WORK_DIR   (same env variables as train_default_model.sh)
set -euo pipefail

WORK=${1:?usage: scripts/lab/ablations.sh WORK_DIR}
source "$(dirname "$0")/../training_options.sh"

# 1. no stage A: the correction is asked to close base errors it cannot reach (--force past the gate)
run_stage "$WORK/joint_no_A" polstereo finetune --init "$WORK/pretrain/last.ckpt" --force --max-correction "$MAXCORR" \
    --correction-search "$CORR_SEARCH" \
    --train "$WORK/glass/train.h5" --val "$WORK/glass/val.h5" --steps "$(steps 2200)" "${COMMON[@]}"
# 2. stage B warped with the base's prediction instead of the ground truth
run_stage "$WORK/B_pred_warp" polstereo learn-pol --init "$WORK/A/last.ckpt" --warp-source pred --max-correction "$MAXCORR" \
    --correction-search "$CORR_SEARCH" \
    --force --train "$WORK/glass/train.h5" --val "$WORK/glass/val.h5" --steps "$(steps 600)" "${COMMON[@]}"
for run in joint_no_A B_pred_warp; do
  polstereo eval "$WORK/$run/last.ckpt" --data "$WORK/glass/test.h5" --json "$WORK/eval_$run.json" --quiet
done
echo "done"
