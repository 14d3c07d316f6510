#!/usr/bin/env bash
# The whole story on the committed sample data, on the CPU, in a few minutes:
#   make-synthetic (generic, no glass) -> adapt (pretrain) -> check-feasibility (expect exit 3)
#   -> adapt (stage A, glass) -> check-feasibility -> learn-pol (B) -> finetune (C)
#   -> eval (base vs base + correction) -> infer on raw sensor mosaics -> OUT/summary.md
# Usage: scripts/demo.sh [OUT_DIR]   (make demo runs it with polstereo on PATH)
set -euo pipefail

OUT=${1:-demo_out}
DATA=sample_data
CAPTURED=$DATA/captured
STEPS=${DEMO_STEPS:-200}
MAXCORR=${DEMO_MAX_CORRECTION:-6}
COMMON=(--crop-size 96 128 --batch-size 4 --workers 0 --val-every 0 --save-every 0 --quiet --seed 0)

rm -rf "$OUT"
mkdir -p "$OUT"
say() { printf '\n== %s\n' "$*"; }
feasible() {  # check-feasibility, tolerating (and reporting) exit code 3
  if polstereo check-feasibility "$1" --data "$DATA/val.h5" --max-correction "$MAXCORR" --json "$2" \
       > "${2%.json}.txt"; then
    cat "${2%.json}.txt"; return 0
  else
    status=$?; cat "${2%.json}.txt"
    [ "$status" -eq 3 ] || exit "$status"
    echo "-> exit code 3: infeasible (a set -e script would stop here)"; return 3
  fi
}

say "1/10 the sample data"
polstereo inspect "$DATA/train.h5" --quick

say "2/10 generic data without glass (a base that has never seen glass)"
polstereo make-synthetic "$OUT/generic" --num 24 --size 160 128 --transparent 0 0 --seed 7 --quiet

say "3/10 pretrain a tiny base model on the generic data ($STEPS steps)"
polstereo adapt --init none --model tiny --steps "$STEPS" --lr 1e-3 --train "$OUT/generic/train.h5" \
  --val "$OUT/generic/val.h5" "${COMMON[@]}" --out "$OUT/pretrain"

say "4/10 feasibility of stage B straight after pretraining (max_correction $MAXCORR px)"
feasible "$OUT/pretrain/last.ckpt" "$OUT/feasibility_pretrain.json" || true

say "5/10 stage A: adapt to the glass data ($STEPS steps)"
polstereo adapt --init "$OUT/pretrain/last.ckpt" --steps "$STEPS" --lr 5e-4 --train "$DATA/train.h5" \
  --val "$DATA/val.h5" "${COMMON[@]}" --out "$OUT/A"

say "6/10 feasibility after stage A"
FORCE=()
if ! feasible "$OUT/A/last.ckpt" "$OUT/feasibility_A.json"; then
  echo "(demo) continuing with --force to show the remaining stages"
  FORCE=(--force)
fi

say "7/10 stage B (learn-pol: correction only, base frozen) and stage C (finetune: both)"
polstereo learn-pol --init "$OUT/A/last.ckpt" --max-correction "$MAXCORR" --steps "$((STEPS / 2))" "${FORCE[@]}" \
  --train "$DATA/train.h5" --val "$DATA/val.h5" "${COMMON[@]}" --out "$OUT/B"
polstereo finetune --init "$OUT/B/last.ckpt" --steps "$((STEPS / 2))" --train "$DATA/train.h5" \
  --val "$DATA/val.h5" "${COMMON[@]}" --out "$OUT/C"

say "8/10 evaluate on the test split: base alone vs base + correction"
polstereo eval "$OUT/C/last.ckpt" --data "$DATA/test.h5" --json "$OUT/eval.json" --save-vis "$OUT/eval_vis"

say "9/10 infer on 'captured' raw polarization mosaics, with depth and point clouds"
polstereo infer "$OUT/C/last.ckpt" --left "$CAPTURED/*_left.png" --right "$CAPTURED/*_right.png" \
  --mosaic IMX250MZR --bit-depth 12 --calib "$CAPTURED/calib.json" --ply --out "$OUT/pred" --quiet

say "10/10 the shipped models on the same test split; the GPU-trained default model on the captures"
polstereo eval models/polstereo-small.ckpt --data "$DATA/test.h5" --json "$OUT/eval_shipped.json" --quiet
polstereo eval models/polstereo-tiny-cpu.ckpt --data "$DATA/test.h5" --json "$OUT/eval_shipped_tiny.json" --quiet
polstereo infer models/polstereo-small.ckpt --left "$CAPTURED/*_left.png" --right "$CAPTURED/*_right.png" \
  --mosaic IMX250MZR --bit-depth 12 --calib "$CAPTURED/calib.json" --ply --out "$OUT/pred_shipped" --quiet

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
feas = {k: json.loads((out / f"feasibility_{k}.json").read_text()) for k in ("pretrain", "A")}
run = json.loads((out / "eval.json").read_text())["runs"][0]
lines = ["# polstereo demo summary", "",
         "| check | base error on transparent pixels (mean, px) | max_correction | verdict "
         "| polarization evidence on transparent pixels (0.5 = none) |", "|---|---:|---:|---|---:|"]
for k, f in feas.items():
    evidence = f["errors"].get("evidence", {}).get("transparent", {}).get("polarization")
    lines.append(f"| after {'generic pretraining' if k == 'pretrain' else 'stage A'} | {f['value']:.2f} | "
                 f"{f['max_correction']:g} | {'feasible' if f['feasible'] else 'infeasible (exit 3)'} | "
                 f"{'-' if evidence is None else f'{evidence:.2f}'} |")
lines += ["", f"Test split ({run['samples']} samples, {run['iters']} iterations), EPE in px:", "",
          "| region | base | base + correction | change |", "|---|---:|---:|---:|"]
for region in ("all", "transparent", "opaque"):
    b, f = run["base"][region], run["final"][region]
    if b.get("pixels"):
        lines.append(f"| {region} | {b['epe']:.3f} | {f['epe']:.3f} | {100 * (f['epe'] - b['epe']) / b['epe']:+.1f} % |")
shipped = {name: json.loads((out / f"{name}.json").read_text())["runs"][0]
           for name in ("eval_shipped", "eval_shipped_tiny")}
lines += ["", "The shipped models on the same split, EPE in px (models/README.md):", "",
          "| region | polstereo-small.ckpt (GPU-trained default): base | base + correction "
          "| polstereo-tiny-cpu.ckpt: base | base + correction |", "|---|---:|---:|---:|---:|"]
for region in ("all", "transparent", "opaque"):
    cells = []
    for run in shipped.values():
        b, f = run["base"][region], run["final"][region]
        cells += [f"{b['epe']:.3f}", f"{f['epe']:.3f}"] if b.get("pixels") else ["-", "-"]
    if any(c != "-" for c in cells):
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
lines += ["", "Checkpoints: pretrain/, A/, B/, C/ (each with metrics.jsonl, train_curves.png, config.yaml); "
          "pictures: eval_vis/, pred/<scene>/, pred_shipped/<scene>/."]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
