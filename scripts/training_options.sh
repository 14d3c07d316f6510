# Shared settings of scripts/train_default_model.sh and scripts/ablations.sh (sourced, not run).
# Environment: MODEL, SCALE (multiplies sample and step counts), SIZE, CROP, BATCH, DEVICE, WORKERS, MAXCORR.
MODEL=${MODEL:-tiny}
SCALE=${SCALE:-1}
SIZE=${SIZE:-"320 256"}
CROP=${CROP:-"128 160"}
BATCH=${BATCH:-4}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-1}
MAXCORR=${MAXCORR:-10}
n() { echo $(( $1 * SCALE )); }
COMMON=(--crop-size $CROP --batch-size "$BATCH" --workers "$WORKERS" --device "$DEVICE" --quiet
        --val-every "$(n 500)" --save-every "$(n 500)" --val-samples 20 --scale-range 0.8 1.25)
