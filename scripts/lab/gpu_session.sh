#!/usr/bin/env bash
# Everything issue 8 measures on a lent GPU, in parts that each fit one 10-minute device call.
#
# One lease (the device gives 30 minutes; a machine goes back after 30 s idle, so make the calls
# back to back) is two or three calls:
#   scripts/lab/gpu_session.sh lease  OUT   # measurements, then the default model's training starts
#   scripts/lab/gpu_session.sh watch  OUT   # (optional) follow the training (returns early if it fails)
#   scripts/lab/gpu_session.sh finish OUT   # end the training, eval, slim checkpoint, more inference variants
#   scripts/lab/gpu_session.sh ablate OUT   # (if time is left) the ablations, resumable, same STEP_SCALE
#
# `lease`: generates the training data in the background (CPU) while the GPU runs the 1-process
# torchrun check, the core inference table and the training-speed table; then measures the
# training configuration's pairs/s per stage, sizes the step counts so that the three stages fit
# TRAIN_BUDGET seconds (STEP_SCALE, printed), and starts scripts/train_default_model.sh in its own
# session (setsid), so it runs on between calls. Data and runs stay in $WORK (gpu_work/, ignored
# by git) for as long as the machine is held.
#
# The single parts, each on its own:
#   scripts/lab/gpu_session.sh torchrun    OUT   # a 1-process torchrun run vs plain runs: same weights?
#   scripts/lab/gpu_session.sh infer-speed OUT   # inference speed and memory per size and amp (the core table)
#   scripts/lab/gpu_session.sh infer-more  OUT   # channels-last, fp32, correction variants, torch.compile
#   scripts/lab/gpu_session.sh train-speed OUT   # training pairs/s, data-wait share, GPU utilisation
#
# Each part writes its tables/logs under OUT (one folder level, few files: the device tool returns
# at most 8). Environment: MODEL (small), SCALE (data: 5), TRAIN_BUDGET (660 s for the whole
# chain), CALL_SECONDS (570: when a part returns), GEN_WORKERS (10), WORKERS (6), SYNTH_ARGS,
# FINISH_WAIT (60: seconds `finish` waits for the chain before stopping it), MORE (the infer-more
# items, default "loop-forms profile channels-last compile-ro infer-compile compile fp32
# anchor", each skipped once CALL_SECONDS have passed; empty: none), RAFT_STEREO (a RAFT-Stereo checkout for bench/bench_anchor.py, default
# .cmp/RAFT-Stereo).
# A dry run of `torchrun` on a CPU: DEVICE=cpu MODEL=tiny STEPS=3 scripts/lab/gpu_session.sh torchrun /tmp/o
set -uo pipefail

PART=${1:?usage: scripts/lab/gpu_session.sh lease|watch|finish|ablate|torchrun|infer-speed|infer-more|train-speed OUT}
OUT=${2:?usage: scripts/lab/gpu_session.sh PART OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=$((T0 + ${CALL_SECONDS:-570}))
WORK=${WORK:-gpu_work}
mkdir -p "$WORK/bin"
WORK=$(cd "$WORK" && pwd)
export MODEL=${MODEL:-small} SCALE=${SCALE:-5} SIZE=${SIZE:-"320 256"} CROP=${CROP:-"256 320"} BATCH=${BATCH:-8}
export DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-6} GEN_WORKERS=${GEN_WORKERS:-10}

export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # also serves the fallback console script below
export PATH=$PATH:$WORK/bin
command -v polstereo > /dev/null ||
  python3 -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1
if ! command -v polstereo > /dev/null; then  # no editable install: a console script on PYTHONPATH does the same
  printf '#!/usr/bin/env python3\nfrom polstereo.cli.main import main\nmain()\n' > "$WORK/bin/polstereo"
  chmod +x "$WORK/bin/polstereo"
fi
command -v polstereo > /dev/null && polstereo --help > /dev/null || {
  echo "gpu_session: polstereo is not runnable here (see $OUT/install.log)" >&2; exit 1; }
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    > "$OUT/gpu.txt" 2>&1 && cat "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)"

# bench knobs, for a dry run on a CPU: BENCH_DEVICE=cpu BENCH_RES=320x256 BENCH_STEPS=7 BENCH_CROP="64 96"
BD=${BENCH_DEVICE:-cuda}
RES=${BENCH_RES:-"640x480 1216x1024"}
BSTEPS=${BENCH_STEPS:-25}
BCROP=${BENCH_CROP:-"320 720"}

part_torchrun() {  # ~1.5 minutes
  local d
  d=$(mktemp -d)
  polstereo make-synthetic "$d/data" --num 40 --size 320 256 --seed 3 --workers 8 --quiet
  local args=(--init none --model "$MODEL" --train "$d/data/train.h5" --steps "${STEPS:-20}" --batch-size 4
              --crop-size 256 320 --seed 0 --workers 2 --device "$DEVICE" --amp off --deterministic
              --val-every 0 --quiet)
  export CUBLAS_WORKSPACE_CONFIG=:4096:8
  polstereo adapt "${args[@]}" --out "$d/plain"
  polstereo adapt "${args[@]}" --out "$d/plain2"
  python3 -m torch.distributed.run --standalone --nproc_per_node 1 "$(command -v polstereo)" adapt "${args[@]}" --out "$d/torchrun"
  echo "plain vs 1-process torchrun (${STEPS:-20} steps, --deterministic, $DEVICE):"
  python3 scripts/lab/compare_checkpoints.py "$d/plain/last.ckpt" "$d/torchrun/last.ckpt"
  echo "plain vs plain (the run-to-run floor of the same command):"
  python3 scripts/lab/compare_checkpoints.py "$d/plain/last.ckpt" "$d/plain2/last.ckpt"
  rm -rf "$d"
}

part_infer_speed() {  # ~2 minutes: the target table
  echo "## inference (bench_models): fp16 and bf16 autocast, every size"
  timeout 90 python3 bench/bench_models.py --device "$BD" --amp fp16 --sizes tiny small base --resolutions $RES
  timeout 90 python3 bench/bench_models.py --device "$BD" --amp bf16 --sizes tiny small base --resolutions $RES
  echo "## the shipped correction module (search cost volume ±10 px)"
  timeout 45 python3 bench/bench_models.py --device "$BD" --amp fp16 --search-radius 10 --sizes small \
      --resolutions $RES --variants full
}

budget() {  # min($1, seconds left in this call), at least 10: a timeout that ends by $END
  local left=$(( END - SECONDS ))
  (( left < 10 )) && left=10
  if (( left < $1 )); then echo "$left"; else echo "$1"; fi
}

part_infer_more() {  # the items of $MORE, in order (each bounded by its timeout)
  local item
  for item in ${MORE-loop-forms profile channels-last compile-ro infer-compile compile fp32 anchor}; do
    if (( END - SECONDS < 30 )); then
      echo "## skipped (this call's time is up): $item"
      continue
    fi
    case $item in
    channels-last)
      echo "## channels-last"
      timeout 45 python3 bench/bench_models.py --device "$BD" --amp fp16 --channels-last --sizes small \
          --resolutions $RES ;;
    compile-ro)  # one process per resolution (compiles are per shape anyway)
      echo "## torch.compile, reduce-overhead (CUDA graphs)"
      for r in $RES; do
        timeout 100 python3 bench/bench_models.py --device "$BD" --amp fp16 --compile --compile-mode reduce-overhead \
            --sizes small --resolutions "$r"
      done ;;
    compile)
      echo "## torch.compile (default mode)"
      for r in $RES; do
        timeout 100 python3 bench/bench_models.py --device "$BD" --amp fp16 --compile --sizes small --resolutions "$r"
      done ;;
    fp32)
      echo "## float32"
      timeout 45 python3 bench/bench_models.py --device "$BD" --amp none --sizes small --resolutions $RES ;;
    profile)
      echo "## where the eager time goes: small + correction, top operators by device time"
      timeout 60 python3 bench/bench_models.py --device "$BD" --amp fp16 --sizes small --variants full \
          --resolutions ${RES##* } --repeats 3 --profile 25 ;;
    loop-forms)  # against the infer-speed rows, which run the one-pass forms CUDA defaults to
      echo "## eager with the CPU's loop forms (polstereo.models.forms): what the one-pass forms save"
      timeout 60 python3 bench/bench_models.py --device "$BD" --amp fp16 --forms loop --sizes small \
          --resolutions $RES
      timeout 45 python3 bench/bench_models.py --device "$BD" --amp fp16 --forms loop --search-radius 10 \
          --sizes small --resolutions $RES --variants full ;;
    infer-compile)  # the CLI path itself, not only the bench: compiled vs eager outputs and wall time
      echo "## polstereo infer --compile on the sample captures (vs eager)"
      local cap=sample_data/captured d="$WORK/infer_compile" mode TIMEFORMAT
      rm -rf "$d"
      for mode in eager compiled; do
        local extra=(--device "$BD")
        [ $mode = compiled ] && extra+=(--compile)
        TIMEFORMAT="$mode: %R s wall"
        time timeout "$(budget 200)" polstereo infer models/polstereo-small.ckpt --left "$cap/*_left.png" \
            --right "$cap/*_right.png" --amp fp16 --format npy --out "$d/$mode" --quiet "${extra[@]}"
      done
      python3 - "$d" <<'PY'
import sys, pathlib, numpy as np
root = pathlib.Path(sys.argv[1])
pairs = [(e, root / "compiled" / e.relative_to(root / "eager")) for e in sorted((root / "eager").rglob("disparity.npy"))]
pairs = [(a, b) for a, b in pairs if b.exists()]
for a, b in pairs:
    print(f"{a.parent.name}: max |compiled - eager| = {np.nanmax(np.abs(np.load(a) - np.load(b))):.4f} px")
print("" if pairs else "no pair has both outputs: see the errors above")
PY
      ;;
    anchor)
      echo "## anchor: RAFT-Stereo real-time configuration on this GPU"
      timeout 60 python3 bench/bench_anchor.py --raft-stereo "${RAFT_STEREO:-.cmp/RAFT-Stereo}" --device "$BD" \
          --resolutions $RES ;;
    *) echo "unknown MORE item $item" ;;
    esac
  done
}

part_train_speed() {  # ~3.5 minutes
  echo "## training (bench_train); GPU utilisation sampled every 200 ms by nvidia-smi"
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$OUT/gpu_util.csv" 2>&1 &
  local smi=$!
  timeout 150 python3 bench/bench_train.py --model "$MODEL" --batch-size 8 --crop $BCROP --amp ${TRAIN_AMPS:-bf16} \
      --stages A B C --correction-search 10 --steps "$BSTEPS" --warmup 5 --workers 6 --device "$BD"
  kill $smi 2> /dev/null
  python3 - "$OUT/gpu_util.csv" <<'EOF'
import sys
v = [float(x) for x in open(sys.argv[1]) if x.strip().replace('.', '', 1).isdigit()]
busy = [x for x in v if x > 0]
print(f"GPU utilisation over the whole bench (process starts included): mean {sum(v)/max(len(v),1):.1f} % "
      f"over {len(v)} samples; mean {sum(busy)/max(len(busy),1):.1f} % while not idle")
EOF
}

chain_running() { [ -f "$WORK/train.pid" ] && kill -0 "$(cat "$WORK/train.pid")" 2> /dev/null; }

progress() {  # one line per stage: last logged step and loss, last validation
  python3 - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
for run in ("pretrain", "A", "B", "C"):
    path = Path(sys.argv[1]) / run / "metrics.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    train = [r for r in recs if r.get("type") == "train"]
    val = [r for r in recs if r.get("type") == "val"]
    if not train:
        continue
    t = train[-1]
    line = f"{run:>8}: step {t['step']}, loss {t['loss']:.3f}, {t['seconds']:.0f} s, {t.get('pairs_per_s', 0):.1f} pairs/s"
    if val:
        final = val[-1]["final"]
        line += f", val EPE {final['all']['epe']:.3f}"
        if "transparent" in final:
            line += f" (transparent {final['transparent']['epe']:.3f})"
    print(line)
EOF
}

watch_chain() {  # until the chain ends or $1 (a $SECONDS value) passes; 0 when it ended
  local until=$1
  local nap
  while chain_running && [ "$SECONDS" -lt "$until" ]; do
    nap=$(( until - SECONDS )); (( nap > 45 )) && nap=45; (( nap < 1 )) && nap=1
    sleep "$nap"
    echo "--- $(( SECONDS - T0 )) s into this call"
    progress
  done
  if ! chain_running && [ -f "$WORK/train.rc" ]; then
    echo "training chain ended with exit code $(cat "$WORK/train.rc")"
    tail -n 5 "$WORK/train.log"
    return 0
  fi
  return 1
}

case $PART in
lease)
  if [ ! -f "$WORK/glass/test.h5" ]; then  # the data, on the CPU, while the GPU runs the torchrun check
    setsid bash -c 'echo $$ > "$1/data.pid"; DATA_ONLY=1 exec bash scripts/train_default_model.sh "$1"' _ "$WORK" \
        > "$WORK/data.log" 2>&1 < /dev/null &
    sleep 1
  fi
  part_torchrun 2>&1 | tee "$OUT/torchrun.txt"
  # the timings want an idle host (eager inference is host-bound): wait for the data job
  while [ -f "$WORK/data.pid" ] && kill -0 "$(cat "$WORK/data.pid")" 2> /dev/null; do sleep 2; done
  cat "$WORK/data.log"
  [ -f "$WORK/glass/test.h5" ] || { echo "gpu_session: the data generation failed (above)" >&2; exit 1; }
  echo "data ready $(( SECONDS - T0 )) s into this call"
  part_infer_speed 2>&1 | tee "$OUT/bench_infer.txt"
  part_train_speed 2>&1 | tee "$OUT/bench_train.txt"
  {
    echo "## the training configuration: $MODEL, batch $BATCH, crop $CROP, bf16, correction search ±10 px"
    timeout 120 python3 bench/bench_train.py --model "$MODEL" --batch-size "$BATCH" --crop $CROP --amp bf16 \
        --stages A B C --correction-search 10 --steps "$BSTEPS" --warmup 5 --workers "$WORKERS" --device "$BD" \
        --json "$WORK/probe.json"
  } 2>&1 | tee -a "$OUT/bench_train.txt"
  # steps sized to the budget: seconds = STEP_SCALE * sum(steps * batch / pairs_per_s) * overhead + fixed
  given=${STEP_SCALE:-}
  STEP_SCALE=$(python3 - "$WORK/probe.json" "${TRAIN_BUDGET:-660}" "$BATCH" <<'EOF'
import json, sys
rate = {r["stage"]: r["pairs_per_s"] for r in json.load(open(sys.argv[1]))["rows"]}
budget, batch = float(sys.argv[2]), int(sys.argv[3])
per_scale = batch * ((1500 + 1000) / rate["A"] + 600 / rate["B"] + 600 / rate["C"])
print(f"{max(0.1, min(20.0, (budget - 180) / (1.2 * per_scale))):.2f}")
EOF
  ) || { STEP_SCALE=${given:-1}; echo "warning: no training-speed probe; STEP_SCALE=$STEP_SCALE" >&2; }
  export STEP_SCALE
  echo "$STEP_SCALE" > "$WORK/step_scale"  # `ablate` reads it: its runs must match the chain's step counts
  echo "STEP_SCALE=$STEP_SCALE for a ${TRAIN_BUDGET:-660} s budget"
  rm -f "$WORK/train.rc"
  setsid bash -c 'echo $$ > "$1/train.pid"; bash scripts/train_default_model.sh "$1"; echo $? > "$1/train.rc"' \
      _ "$WORK" > "$WORK/train.log" 2>&1 < /dev/null &
  sleep 20
  head -n 3 "$WORK/train.log"
  watch_chain "$END" || echo "training goes on in the background ($(( SECONDS - T0 )) s into this call)"
  ;;
watch)
  watch_chain "$END" || echo "training goes on in the background"
  ;;
finish)
  watch_chain $((T0 + ${FINISH_WAIT:-60})) || {
    echo "stopping the training chain (SIGINT: the running stage saves last.ckpt)"
    for signal in INT TERM KILL; do  # escalate if a stage does not stop within a minute
      kill -"$signal" -- "-$(cat "$WORK/train.pid")" 2> /dev/null
      for _ in $(seq 30); do chain_running || break; sleep 2; done
      chain_running || break
    done
  }
  for stage in pretrain A B C; do  # eval what exists (the chain evals only when it completes)
    if [ -f "$WORK/$stage/last.ckpt" ] && [ ! -f "$WORK/eval_$stage.json" ]; then
      polstereo eval "$WORK/$stage/last.ckpt" --data "$WORK/glass/test.h5" --json "$WORK/eval_$stage.json" --quiet
    fi
  done
  for stage in C B A; do
    if [ -f "$WORK/$stage/last.ckpt" ]; then
      python3 scripts/slim_checkpoint.py "$WORK/$stage/last.ckpt" "$OUT/polstereo-$MODEL.ckpt" &&
        python3 - "$WORK/$stage/last.ckpt" <<'EOF' && break
import sys, torch
p = torch.load(sys.argv[1], weights_only=True)
print(f"shipped candidate: stage {p['stage']}, complete: {p['lineage'][-1].get('complete')}")
EOF
    fi
  done
  cp "$WORK/train.log" "$OUT/train.log"
  (cd "$WORK" && tar czf "$OUT/train-results.tar.gz" --ignore-failed-read eval_*.json eval_*.txt feasibility.json \
      probe.json data.log ./*/metrics.jsonl ./*/config.yaml 2> /dev/null)
  part_infer_more 2>&1 | tee "$OUT/bench_infer_more.txt"
  ls -l "$OUT"
  ;;
ablate)  # the ablations on the lease's work directory, with the chain's STEP_SCALE
  [ -f "$WORK/step_scale" ] && export STEP_SCALE=${STEP_SCALE:-$(cat "$WORK/step_scale")}
  echo "STEP_SCALE=${STEP_SCALE:-$SCALE}"
  timeout -s INT -k 20 "${TRAIN_SECONDS:-540}" bash scripts/lab/ablations.sh "$WORK" 2>&1 | tee "$OUT/ablate.log"
  (cd "$WORK" && tar czf "$OUT/ablate-results.tar.gz" --ignore-failed-read eval_joint_no_A.json eval_B_pred_warp.json \
      ./joint_no_A/metrics.jsonl ./B_pred_warp/metrics.jsonl 2> /dev/null)
  ;;
torchrun) part_torchrun 2>&1 | tee "$OUT/torchrun.txt" ;;
infer-speed) part_infer_speed 2>&1 | tee "$OUT/bench_infer.txt" ;;
infer-more) part_infer_more 2>&1 | tee "$OUT/bench_infer_more.txt" ;;
train-speed) part_train_speed 2>&1 | tee "$OUT/bench_train.txt" ;;
*)
  echo "unknown part $PART" >&2; exit 2 ;;
esac
