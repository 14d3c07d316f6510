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
#   runs), A_ARGS (extra adapt options; "--robust-scale 4" made the shipped robust pair, "--iters 2"
#   trains 1.5x cheaper for as good a model: docs/notebook/2026-12-07-levers-on-the-warm-start.md;
#   "--robust-scale 4 --freeze base.update" keeps the base's refinement fixed, 1.2x cheaper, the best on glass
#   (with "--iters 2" as well: 3x cheaper on two threads and better still, one seed):
#   docs/notebook/2026-12-07-kind-weights-exposure-freeze.md), STAGES ("A"; "A B C" adds learn-pol and finetune on top, with
#   B_ARGS for the correction module, e.g. "--correction-context unet --correction-shape --shape-weight 1",
#   B_STEPS and C_STEPS, 600 each, at the stages' learning rates; C draws generic scenes as A does and keeps A's --robust-scale).
#   Resumable: re-run the same command after a stop.
set -euo pipefail
WORK=${1:?usage: scripts/warm_start_small.sh WORK_DIR [BASE_INPUT]}
BASE_INPUT=${2:-polarization-adapter}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/training_options.sh"
STEPS=${STEPS:-1000}; GENERIC_SHARE=${GENERIC_SHARE:-30}; LR=${LR:-2e-4}; SEED=${SEED:-0}
INIT=${INIT:-$HERE/../models/polstereo-small.ckpt}
DATA=${DATA:-$WORK/data}
DATA_ONLY=1 bash "$HERE/train_default_model.sh" "$DATA"
# plan N [mixed]: PLAN = a run of N steps (warm-up N/20, validation every N/4) with the options every
# stage shares; "mixed" draws GENERIC_SHARE % of the steps from the generic scenes, the rest from glass
plan() {
  local steps=$1 generic=$(( $1 * GENERIC_SHARE / 100 ))
  PLAN=(--steps "$steps" --warmup-steps "$(( steps / 20 ))" --val-every "$(( steps / 4 ))" --seed "$SEED"
        --crop-size $CROP --batch-size "$BATCH" --workers "$WORKERS" --device "$DEVICE" --quiet
        --save-every 100 --val-samples 20 --scale-range 0.8 1.25 --val "$DATA/glass/val.h5")
  if [ "${2:-}" = mixed ]; then
    PLAN+=(--train "$DATA/generic/train.h5" --train "$DATA/glass/train.h5" --dataset-steps "$generic"
           --dataset-steps "$(( steps - generic ))" --dataset-order shuffle)
  else
    PLAN+=(--train "$DATA/glass/train.h5")
  fi
}
INPUT=(); [ "$BASE_INPUT" = intensity ] || INPUT=(--base-input "$BASE_INPUT")
plan "$STEPS" mixed
run_stage "$WORK/$BASE_INPUT" polstereo adapt --init "$INIT" ${INPUT[@]+"${INPUT[@]}"} --lr "$LR" "${PLAN[@]}" \
    ${A_EXTRA[@]+"${A_EXTRA[@]}"}
LAST=$WORK/$BASE_INPUT/last.ckpt
if [[ " ${STAGES:-A} " == *" B "* ]]; then
  polstereo check-feasibility "$LAST" --data "$DATA/glass/val.h5" --max-correction "$MAXCORR" \
      --json "$WORK/$BASE_INPUT-feasibility.json"
  plan "${B_STEPS:-600}"
  run_stage "$WORK/$BASE_INPUT-B" polstereo learn-pol --init "$LAST" --max-correction "$MAXCORR" \
      --correction-search "$CORR_SEARCH" "${PLAN[@]}" ${B_EXTRA[@]+"${B_EXTRA[@]}"}
  LAST=$WORK/$BASE_INPUT-B/last.ckpt
fi
if [[ " ${STAGES:-A} " == *" C "* ]]; then
  ROBUST=(); [[ " ${A_ARGS:-} " =~ \ --robust-scale\ ([0-9.]+) ]] && ROBUST=(--robust-scale "${BASH_REMATCH[1]}")
  plan "${C_STEPS:-600}" mixed
  run_stage "$WORK/$BASE_INPUT-C" polstereo finetune --init "$LAST" "${PLAN[@]}" ${ROBUST[@]+"${ROBUST[@]}"}
  LAST=$WORK/$BASE_INPUT-C/last.ckpt
fi
echo "done: $LAST"
