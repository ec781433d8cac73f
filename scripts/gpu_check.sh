#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine without internet, from the checkout alone.
#
#   make gpu-assets          # here, with internet: .gpu/wheelhouse (no mmcv wheel: nms is torchvision's) and the archive
#   scripts/gpu_check.sh     # there: set up STACK=system, then train/test/predict/featmap/cam on cuda
#
# Writes $OUT/gpu_check.json (each step's seconds and peak GPU memory, mAP, GPU name, versions,
# where mmcv's nms came from), gpu_check.log and the figures. Prints timestamped progress.
# Dry run on a CPU: GPU_CHECK_DEVICE=cpu GPU_CHECK_EPOCHS=2 scripts/gpu_check.sh
#
# Environment: OUT (default work_dirs/gpu_check_out), GPU_CHECK_ASSETS (default .gpu),
# GPU_CHECK_DEVICE (cuda), GPU_CHECK_CONFIG (auto), GPU_CHECK_EPOCHS (the recipe's), GPU_CHECK_TRAIN_SECONDS (330: training
# stops after the first epoch past it, so the whole check fits one 10-minute command), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-work_dirs/gpu_check_out}
assets=${GPU_CHECK_ASSETS:-.gpu}
device=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
log() { printf '[gpu-check %s +%ss] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*"; }

log "start: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'), $(nproc) cores"
for need in "$assets/wheelhouse" "$assets/balloon_dataset.zip"; do
    [[ -e $need ]] || { log "missing $need: run 'make gpu-assets' where there is internet"; exit 2; }
done
log "set-up: STACK=system from $assets/wheelhouse (no index)"
setup_start=$SECONDS
WHEELHOUSE=$assets/wheelhouse SYSTEM_TORCH=1 BALLOONDET_DEV=0 \
    bash scripts/setup_env.sh .venv-system 2>&1 | tee "$out/setup.log"
setup_s=$((SECONDS - setup_start))
log "set-up done in ${setup_s} s"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
.venv-system/bin/python scripts/gpu_check.py --device "$device" --archive "$assets/balloon_dataset.zip" \
    --out "$out" --setup-seconds "$setup_s" --setup-log "$out/setup.log" \
    --config "${GPU_CHECK_CONFIG:-auto}" ${GPU_CHECK_EPOCHS:+--epochs "$GPU_CHECK_EPOCHS"} --train-seconds "${GPU_CHECK_TRAIN_SECONDS:-330}"
rm -f "$out/setup.log"  # kept in gpu_check.log; $OUT brings back 8 files at most
log "done"
