# Shared settings of scripts/train_default_model.sh and scripts/lab/ablations.sh (sourced, not run).
# Environment: MODEL, SCALE (multiplies sample and step counts), STEP_SCALE (multiplies step counts
# instead of SCALE, may be fractional, e.g. to fit a time budget), SIZE, CROP, BATCH, DEVICE, WORKERS (loader),
# MAXCORR, GEN_WORKERS (make-synthetic processes), CORR_SEARCH (correction search radius, 0 = off), GLASS, TEXTURES,
# SYNTH_ARGS (extra make-synthetic options), A_ARGS and B_ARGS (extra stage A / stage B options),
# A_STEPS and A_GENERIC_STEPS (stage A's steps and how many of them draw generic scenes; 0 = glass only).
MODEL=${MODEL:-tiny}
SCALE=${SCALE:-1}
SIZE=${SIZE:-"320 256"}
CROP=${CROP:-"128 160"}
BATCH=${BATCH:-4}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-1}
# the correction bound, px: the stage A base must err less than this on glass (the gate before stage B);
# 10 fitted solid glass, the default mix with thin walls and panes needs 12 (docs/results.md)
MAXCORR=${MAXCORR:-12}
GEN_WORKERS=${GEN_WORKERS:-2}
CORR_SEARCH=${CORR_SEARCH:-10}   # the correction module's search cost volume radius, px (0 = the plain module)
# extra make-synthetic options for both data sets, e.g. "--max-disparity 25 --bit-depth 12" for a
# rig whose baseline is small against the distance (docs/notebook/2026-11-23-polarization-evidence.md: the evidence depends on it)
read -r -a SYNTH <<< "${SYNTH_ARGS:-}"
# the glass data's kinds and both sets' textures (make-synthetic --glass, --textures), by default
# make-synthetic's own: solid, thin-walled, pane and slab glass, photographs and patterns (docs/synthetic.md);
# GLASS=solid TEXTURES=procedural gives the data of the models before issue 16 (docs/notebook/2026-12-03-issue-15-tiny.md)
GLASS=${GLASS:-solid,thin,pane,slab}
TEXTURES=${TEXTURES:-mix}
# extra options of stage A (e.g. "--base-input polarization", early fusion) and of the new
# correction module in stage B (e.g. "--correction-context unet --correction-shape --shape-weight 1");
# docs/notebook/2026-12-03-shape-levers.md measured both
read -r -a A_EXTRA <<< "${A_ARGS:-}"
read -r -a B_EXTRA <<< "${B_ARGS:-}"
STEP_SCALE=${STEP_SCALE:-$SCALE}
[[ $STEP_SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "STEP_SCALE must be a number like 1.5, got '$STEP_SCALE'" >&2; exit 2; }
n() { echo $(( $1 * SCALE )); }                             # sample counts
steps() { awk -v a="$1" -v s="$STEP_SCALE" 'BEGIN { v = int(a * s + 0.5); print (v < 1 ? 1 : v) }'; }  # step counts
COMMON=(--crop-size $CROP --batch-size "$BATCH" --workers "$WORKERS" --device "$DEVICE" --quiet
        --val-every "$(steps 500)" --save-every "$(steps 500)" --val-samples 20 --scale-range 0.8 1.25)

# run_stage DIR CMD...: run a training command whose --out is DIR, with --resume when DIR
# already holds a run: an interrupted one continues where it stopped, a complete one ends at
# once, and one made with other options (another SCALE, say) is refused by the trainer with
# a one-line error instead of being silently kept. So the scripts can be re-run after a
# timeout or Ctrl-C.
run_stage() {
  local dir=$1; shift
  if [ -f "$dir/last.ckpt" ]; then
    "$@" --out "$dir" --resume
  else
    "$@" --out "$dir"
  fi
}
