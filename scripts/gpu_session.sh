#!/usr/bin/env bash
# Everything issue 8 measures on a lent GPU, in parts that each fit one 10-minute device call.
#
#   scripts/gpu_session.sh infer-speed OUT   # inference speed and memory per size, amp, layout, compile
#   scripts/gpu_session.sh train-speed OUT   # training pairs/s, GPU utilisation, export parity
#   scripts/gpu_session.sh torchrun OUT   # a 1-process torchrun run vs a plain run: same weights?
#   scripts/gpu_session.sh train    OUT   # default model: data, pretrain, A, check, B, C, eval (resumable)
#   scripts/gpu_session.sh ablate   OUT   # the ablations on the same work directory
#
# Each part writes its tables/logs under OUT (one folder level, few files: the device tool
# returns at most 8) and ends inside its time budget. `train` and `ablate` keep their data and
# runs in $WORK (default gpu_work/, ignored by git) and resume where a previous call stopped, so
# repeated calls continue the same run — as long as they reach the same machine: the device
# keeps files only while it stays held (it goes back after 30 s idle or 30 min held), so make
# the calls back to back. `train` stops itself after TRAIN_SECONDS (default 480; SIGINT, so the
# trainer saves last.ckpt) and copies the slimmed checkpoint and the eval JSONs to OUT.
# Environment: SCALE (default 5), MODEL (small), GEN_WORKERS (14), WORKERS (6), TRAIN_SECONDS, SYNTH_ARGS
# (extra make-synthetic options, e.g. "--max-disparity 25 --bit-depth 12", with another WORK); for a
# dry run of `torchrun` on a CPU: DEVICE=cpu MODEL=tiny STEPS=3 scripts/gpu_session.sh torchrun /tmp/o
set -uo pipefail

PART=${1:?usage: scripts/gpu_session.sh infer-speed|train-speed|torchrun|train|ablate OUT}
OUT=${2:?usage: scripts/gpu_session.sh PART OUT}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
command -v polstereo > /dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . \
    > "$OUT/install.log" 2>&1 || { echo "install failed"; cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

case $PART in
infer-speed)  # worst case (every timeout) 9 minutes
  {
    echo "## inference (bench_models)"
    timeout 90 python3 bench/bench_models.py --device cuda --amp fp16 --sizes tiny small base \
        --resolutions 640x480 1216x1024
    timeout 60 python3 bench/bench_models.py --device cuda --amp bf16 --sizes tiny small base \
        --resolutions 640x480 1216x1024
    timeout 45 python3 bench/bench_models.py --device cuda --amp bf16 --channels-last --sizes small \
        --resolutions 640x480 1216x1024
    timeout 45 python3 bench/bench_models.py --device cuda --amp none --sizes small --resolutions 640x480 1216x1024
    timeout 45 python3 bench/bench_models.py --device cuda --amp bf16 --context-stride 4 --sizes small \
        --resolutions 640x480 1216x1024 --variants full
    timeout 45 python3 bench/bench_models.py --device cuda --amp bf16 --search-radius 10 --sizes small \
        --resolutions 640x480 1216x1024 --variants full
    timeout 105 python3 bench/bench_models.py --device cuda --amp bf16 --compile --sizes small \
        --resolutions 640x480 1216x1024
    timeout 105 python3 bench/bench_models.py --device cuda --amp bf16 --compile --compile-mode reduce-overhead \
        --sizes small --resolutions 640x480 1216x1024
  } 2>&1 | tee "$OUT/bench_models.txt"
  ;;
train-speed)  # worst case 8 minutes
  {
    echo "## training (bench_train), GPU utilisation sampled every 200 ms by nvidia-smi"
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$OUT/gpu_util.csv" &
    SMI=$!
    timeout 300 python3 bench/bench_train.py --model small --batch-size 8 --crop 320 720 --amp bf16 off \
        --mask-ratio 0 0.4 --steps 40 --workers 6 --device cuda
    kill $SMI
    python3 - "$OUT/gpu_util.csv" <<'EOF'
import sys
v = [float(x) for x in open(sys.argv[1]) if x.strip().replace('.', '', 1).isdigit()]
busy = [x for x in v if x > 0]
print(f"GPU utilisation: mean {sum(v)/max(len(v),1):.1f} % over {len(v)} samples; "
      f"mean {sum(busy)/max(len(busy),1):.1f} % while busy")
EOF
  } 2>&1 | tee "$OUT/bench_train.txt"
  timeout 120 python3 bench/bench_export.py --device cuda 2>&1 | tee "$OUT/bench_export.txt"
  ;;
torchrun)
  D=$(mktemp -d)
  polstereo make-synthetic "$D/data" --num 40 --size 320 256 --seed 3 --workers 8 --quiet
  ARGS=(--init none --model "${MODEL:-small}" --train "$D/data/train.h5" --steps "${STEPS:-30}" --batch-size 4
        --crop-size 256 320 --seed 0 --workers 2 --device "${DEVICE:-cuda}" --amp off --deterministic
        --val-every 0 --quiet)
  export CUBLAS_WORKSPACE_CONFIG=:4096:8
  {
    polstereo adapt "${ARGS[@]}" --out "$D/plain"
    torchrun --standalone --nproc_per_node 1 "$(command -v polstereo)" adapt "${ARGS[@]}" --out "$D/torchrun"
    echo "plain vs 1-process torchrun (${STEPS:-30} steps, deterministic, ${DEVICE:-cuda}):"
    python3 scripts/compare_checkpoints.py "$D/plain/last.ckpt" "$D/torchrun/last.ckpt"
    polstereo eval "$D/plain/last.ckpt" --data "$D/data/test.h5" --json "$D/plain.json" --quiet
    polstereo eval "$D/torchrun/last.ckpt" --data "$D/data/test.h5" --json "$D/torchrun.json" --quiet
    python3 -c "import json,sys; [print(p, json.load(open(p))['runs'][0]['final']['all']['epe']) for p in sys.argv[1:]]" \
        "$D/plain.json" "$D/torchrun.json"
  } 2>&1 | tee "$OUT/torchrun.txt"
  ;;
train|ablate)
  WORK=${WORK:-gpu_work}
  export MODEL=${MODEL:-small} SCALE=${SCALE:-5} SIZE=${SIZE:-"320 256"} CROP=${CROP:-"256 320"} BATCH=${BATCH:-8}
  export DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-6} GEN_WORKERS=${GEN_WORKERS:-14}
  script=scripts/train_default_model.sh
  [ "$PART" = ablate ] && script=scripts/ablations.sh
  # SIGINT lets the trainer finish its step and save last.ckpt; the next call resumes it.
  timeout -s INT -k 20 "${TRAIN_SECONDS:-480}" bash "$script" "$WORK" 2>&1 | tee "$OUT/$PART.log"
  # the device returns at most 8 files: one archive of the small results
  (cd "$WORK" && tar czf "$OUT/$PART-results.tar.gz" --ignore-failed-read eval_*.json feasibility.json \
      ./*/metrics.jsonl ./*/config.yaml 2>/dev/null)
  if [ -f "$WORK/C/last.ckpt" ] && [ "$PART" = train ]; then
    python3 scripts/slim_checkpoint.py "$WORK/C/last.ckpt" "$OUT/polstereo-$MODEL.ckpt"
  fi
  ls -l "$OUT"
  ;;
*)
  echo "unknown part $PART" >&2; exit 2 ;;
esac
