#!/usr/bin/env bash
# Create (or complete) the virtual environment that trains LoRA adapters for the edge model
# (`pice tune train` runs its training there as a subprocess, so the main venv stays light).
# Idempotent: a finished environment is detected and skipped.
#
#   bash scripts/setup-tune.sh [VENV]            (default VENV: .venv-tune)
#
# Environment: PYTHON (interpreter for the new venv, default python3), TORCH_SPEC (default the
# CPU build vLLM's CPU environment runs, torch==2.13.0+cpu; a GPU machine sets TORCH_SPEC=torch
# to take PyPI's CUDA build), TORCH_INDEX (an extra index to look in, default none: pip's own
# configuration, where setup-vllm.sh finds the same CPU build; elsewhere
# TORCH_INDEX=https://download.pytorch.org/whl/cpu).
set -euo pipefail

VENV="${1:-.venv-tune}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC-torch==2.13.0+cpu}"
TORCH_INDEX="${TORCH_INDEX:-}"
PEFT_VERSION="0.21.0"
# trl: the preference round's DPO (`pice tune train --role preference`).
TRL_VERSION="1.16.0"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

installed() {
    "$VENV/bin/python" - "$PEFT_VERSION" "$TRL_VERSION" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = version("peft") == sys.argv[1] and version("trl") == sys.argv[2] and all(
        version(d) for d in ("torch", "transformers", "gguf", "safetensors", "accelerate")
    )
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if installed; then
    echo "peft==$PEFT_VERSION and trl==$TRL_VERSION already in $VENV"
else
    echo "installing torch, transformers, peft==$PEFT_VERSION and trl==$TRL_VERSION into $VENV (about 1 GB)"
    "$VENV/bin/python" -m pip install --upgrade --quiet pip
    index=()
    if [[ -n "$TORCH_INDEX" ]]; then
        index=(--extra-index-url "$TORCH_INDEX")
    fi
    # torch first and on its own, so the CPU build is chosen before anything pulls in the
    # default (CUDA) one.
    "$VENV/bin/python" -m pip install "${index[@]+"${index[@]}"}" "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install "peft==$PEFT_VERSION" "trl==$TRL_VERSION" transformers gguf \
        safetensors accelerate
fi

"$VENV/bin/python" -c "import peft, torch, transformers, gguf, trl" >/dev/null 2>&1 \
    || { echo "error: the training stack in $VENV does not import" >&2; exit 1; }
echo "tuning environment ready: $VENV"
