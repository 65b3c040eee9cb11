#!/usr/bin/env bash
# The one script a GPU session runs (issue 11): install what the device lacks from carried
# wheels, check the Triton kernels on CUDA (no interpreter), then time one training step.
#
#   bash benchmarks/device_check.sh            # results under $OUT (default ./device_out)
#
# Wheels: `wheels/` (git-ignored), filled on the development machine with
#   pip download --no-deps -d wheels --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --only-binary=:all: snntorch spikingjelly pytest pluggy iniconfig pygments packaging loguru
# triton is not carried (285 MB, over the carry limit): CUDA builds of torch ship it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device_out}"
mkdir -p "$OUT"
log() { echo "[device_check] $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" | tee -a "$OUT/summary.txt"
python -c "import triton; print('triton', triton.__version__)" 2>&1 | tee -a "$OUT/summary.txt" \
    || { log "triton missing: the CUDA torch build should ship it; stopping"; exit 1; }

# Only what is missing, never touching the device's torch/triton.
for module in snntorch spikingjelly pytest; do
    python -c "import $module" 2>/dev/null || pip install --no-index --find-links wheels --no-deps wheels/${module}-*.whl >> "$OUT/pip.log" 2>&1
done
for module in pluggy iniconfig pygments packaging loguru; do
    python -c "import $module" 2>/dev/null || pip install --no-index --find-links wheels --no-deps wheels/${module}-*.whl >> "$OUT/pip.log" 2>&1
done
pip install --no-deps --no-build-isolation -e . >> "$OUT/pip.log" 2>&1 || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

log "kernel tests on CUDA (TRITON_INTERPRET=0)"
# The CUDA-only tests too (skipped on CPU): pinned sparse batches from a loader worker.
TRITON_INTERPRET=0 timeout 240 python -m pytest -q tests/kernels tests/data/test_sparse_batches.py -p no:cacheprovider \
    > "$OUT/tests_cuda.txt" 2>&1
log "tests exit code $? ($(tail -1 "$OUT/tests_cuda.txt"))"

log "benchmark: ours (scan, triton) vs snnTorch vs SpikingJelly"
timeout 300 python benchmarks/gpu_step.py --device cuda --repeats 10 --json "$OUT/gpu_step.json" > "$OUT/gpu_step.txt" 2>&1
log "benchmark exit code $?"
cat "$OUT/gpu_step.txt" | grep -v Warning | tee -a "$OUT/summary.txt"

log "e-prop vs BPTT step (target: e-prop <= 2x BPTT): both e-prop schedules (block, step), N-MNIST FF, B=128, T=100"
timeout 150 python benchmarks/memory_vs_T.py --device cuda --batch 128 --steps 100 --learners bptt eprop eprop_step decolle \
    --repeats 10 --json "$OUT/eprop_step.json" > "$OUT/eprop_step.txt" 2>&1
log "e-prop benchmark exit code $?"
grep -v Warning "$OUT/eprop_step.txt" | tee -a "$OUT/summary.txt"

if [ -d ../shared/data/nmnist_small ]; then
    log "input pipeline: frame cache, packed batches unpacked on the GPU"
    timeout 120 python benchmarks/frame_pipeline.py --device cuda --output "$OUT/frame_pipeline.json" > "$OUT/frame_pipeline.txt" 2>&1
    log "frame pipeline exit code $?"
else
    log "input pipeline skipped: ../shared/data/nmnist_small is not on this machine"
fi
