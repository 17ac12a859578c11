#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine (about 6 minutes on one GPU; under 8 by construction):
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT if set, else ./gpu-check
#
# 1. the tests that touch CUDA (tests/test_cuda.py: GPU ranks = CPU ranks for every registered model,
#    bf16 autocast trains and ranks in float32, a grid end to end on --device cuda), at most 2.5 min;
# 2. benchmarks/gpu_check.py: one epoch and one filtered test evaluation of every registered model on
#    DB15K-sized inputs, bf16 autocast off and on, peak GPU memory, as a Markdown table, then the
#    projected wall time of paper-main and the MoMoK ablation grids at those speeds; it starts no
#    new measurement after 240 s, names what it did not measure, rewrites its table after every
#    measurement (so a cut keeps what was measured) and is killed at 5 min.
# Needs a CUDA build of torch (scripts/install.sh installs one where nvidia-smi finds a GPU) and the
# dev extras. Writes OUT_DIR/{nvidia-smi.txt,cuda-tests.txt,gpu_check.md}; exit status: the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: torch sees no CUDA device ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)); nothing run" >&2
    exit 2
fi
start=$(date +%s)
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
echo "== CUDA tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda-tests.txt"
tests=${PIPESTATUS[0]}
echo "== timings (tests exit status $tests, $(( $(date +%s) - start )) s so far)"
timeout 300 "$PY" benchmarks/gpu_check.py --budget 240 --out "$out"
bench=$?
echo "== done in $(( $(date +%s) - start )) s: tests exit $tests, timings exit $bench; files in $out/"
[ "$tests" -eq 0 ] && exit "$bench" || exit "$tests"
