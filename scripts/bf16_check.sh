#!/usr/bin/env bash
# The bf16 check (issue #19): both torch stacks side by side on a CPU with native bf16 (AVX512-BF16 or AMX),
# where the torch 2.14.1 stack lost time at 640 px (model only 86.6 -> 104.7 ms against torch 2.1.2).
#
#   scripts/bf16_check.sh        # or: make bf16-check
#
# Sets up the locked stack (.venv) and a torch 2.1.2 stack beside it (torch, torchvision, numpy and what
# STACK=system takes from its interpreter, from the package index into .bf16/torch21, then `make setup
# STACK=system` into .bf16/torch21-bd: mmcv-lite and mmcv_ext on both, so only torch differs), then, one
# job at a time on the cores:
#   1. bench/benchmark.py on each stack, new, old, new, old (fp32 and bf16; appended to bench/results.jsonl);
#   2. bench/compare_stacks.py in bf16, then fp32 (ROUNDS pairs each; appended to bench/compare_stacks.jsonl);
#   3. bench/profile_ops.py in bf16 with each stack: section 3 names the oneDNN kernel that changed.
# Logs in $OUT (default .bf16/logs). An estimated 40 min on 2 cores (not yet run on such a CPU). Refuses (exit 2) where bf16 is emulated,
# since it would time the emulation rather than the kernels.
# Dry run of the plumbing on any CPU (fp32, tiny sizes, nothing appended): BF16_CHECK_DRY=1 scripts/bf16_check.sh
#
# Environment: OUT; OLD_PYTHON, an interpreter that already has torch 2.1.2 and torchvision 0.16.2 (skips
# the 2.5 GB download); BASE_PYTHON, the Python for the torch 2.1.2 venv (python3.11: torch 2.1 has no
# wheels for 3.12+); ROUNDS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=${BF16_CHECK_DRY:-0}
out=${OUT:-.bf16/logs}
rounds=${ROUNDS:-8}
log() { printf '[bf16-check %s +%ss] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*"; }

make setup >/dev/null 2>&1 || { log "make setup failed: run it alone to see why"; exit 1; }
native=$(.venv/bin/python -c "from balloondet.engine.precision import resolve_precision; print(resolve_precision('auto', 'cpu')[0])")
if [[ $native != bf16 && $dry != 1 ]]; then
    log "bf16 is emulated on this CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), no avx512_bf16 or amx_bf16):"
    log "timing it would measure the emulation, not the kernels. Run this on a CPU with native bf16 (BF16_CHECK_DRY=1 for a dry run)."
    exit 2
fi
mkdir -p "$out"
exec > >(tee "$out/bf16_check.log") 2>&1
log "start: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, precision auto = $native, dry run = $dry"

old_venv=.bf16/torch21-bd
if [[ -z ${OLD_PYTHON:-} ]]; then
    log "torch 2.1.2, torchvision 0.16.2, numpy 1.26.4 and what STACK=system takes from its interpreter into .bf16/torch21 (${BASE_PYTHON:-python3.11})"
    [[ -x .bf16/torch21/bin/python ]] || "${BASE_PYTHON:-python3.11}" -m venv .bf16/torch21
    # the rest of scripts/notebook_install.py's FROM_INTERPRETER; opencv < 4.12, whose wheels need numpy 2
    .bf16/torch21/bin/python -m pip install -q torch==2.1.2 torchvision==0.16.2 numpy==1.26.4 \
        opencv-python==4.11.0.86 matplotlib scipy pillow pyyaml tqdm rich packaging six scikit-learn
    OLD_PYTHON=.bf16/torch21/bin/python
fi
log "the torch 2.1.2 stack: make setup STACK=system PYTHON=$OLD_PYTHON VENV=$old_venv"
make setup STACK=system PYTHON="$OLD_PYTHON" VENV="$old_venv" > "$out/setup_torch21.log" 2>&1 \
    || { tail -20 "$out/setup_torch21.log"; log "set-up of the torch 2.1.2 stack failed (log: $out/setup_torch21.log)"; exit 1; }
new=.venv/bin/python old=$old_venv/bin/python
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

if [[ $dry == 1 ]]; then
    bench_args=(--quick --precisions fp32) compare_args=(--sizes 64 --rounds 1 --warmup 0 --iters 1)
    profile_args=(--precisions fp32 --size 64 --warmup 0 --iters 1 --top 3) precisions=(fp32)
else
    bench_args=(--out bench/results.jsonl) compare_args=(--rounds "$rounds" --out bench/compare_stacks.jsonl)
    profile_args=(--precisions bf16 --iters 20) precisions=(bf16 fp32)
fi
for run in new old new old; do
    python=${!run}
    log "1. make bench, $run stack ($($python -c 'import torch; print(torch.__version__)'))"
    $python bench/benchmark.py "${bench_args[@]}" > "$out/bench_$run.log" 2>&1
    grep -E 'matmul peak|predict latency|end-to-end latency|train throughput' "$out/bench_$run.log"
done
for precision in "${precisions[@]}"; do
    log "2. compare_stacks.py --precision $precision: A = torch 2.1.2, B = torch 2.14.1"
    $new bench/compare_stacks.py --python-a "$old" --python-b "$new" --precision "$precision" "${compare_args[@]}"
done
for run in old new; do
    python=${!run}
    log "3. profile_ops.py ${profile_args[*]}, $run stack (log: $out/profile_$run.log)"
    $python bench/profile_ops.py "${profile_args[@]}" > "$out/profile_$run.log" 2>&1
    grep -A12 'oneDNN kernels' "$out/profile_$run.log" | head -14
done
log "done: compare the two profile_ops logs' section 3 (kernel by kernel), then docs/results.md#speed"
