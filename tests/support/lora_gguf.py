"""A random llama.cpp LoRA adapter GGUF for a catalogue model, made in the tuning environment.

``random_lora.py`` writes a peft adapter with random, non-zero A and B over the model's Hugging
Face checkpoint; ``pice_tune/worker.py export`` turns it into the adapter GGUF, as
``pice tune export`` does. About half a minute for the 0.5B model, a minute for the 1.5B.
Needs ``.venv-tune`` (``make tune-env``; or ``PICE_TUNE_VENV``): :func:`tune_venv` skips
the calling test without it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pice.cloud.vllm import ensure_checkpoint
from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model

ROOT = Path(__file__).resolve().parents[2]


def tune_venv() -> Path:
    # The tuning package is not part of the edge's install (tests/test_edge_py310.py collects
    # the edge's tests with the edge alone), so it is imported where it is needed.
    from pice_tune.steps import find_tune_venv

    try:
        return find_tune_venv(Path(os.environ.get("PICE_TUNE_VENV", ROOT / ".venv-tune")))
    except ModelProvisioningError:
        pytest.skip("no tuning environment (make tune-env)")


def random_lora_gguf(
    model_name: str, work: Path, name: str, *, rank: int = 4, b_scale: float = 1.0
) -> Path:
    """``work/NAME.gguf``: a random rank-``rank`` adapter for ``model_name`` (its file stem,
    ``NAME``, is the name an edge agent reports it under)."""
    from pice_tune.steps import run_worker

    venv = tune_venv()
    model = resolve_model(model_name, progress=False)
    checkpoint = ensure_checkpoint(model, venv)
    peft_dir = work / f"{name}-peft"
    script = ROOT / "tests" / "support" / "random_lora.py"
    subprocess.run(
        [
            *(str(venv / "bin" / "python"), str(script), str(checkpoint), str(peft_dir)),
            *("--rank", str(rank), "--b-scale", str(b_scale)),
        ],
        check=True,
        capture_output=True,
    )
    out = work / f"{name}.gguf"
    run_worker(
        venv,
        *("export", "--adapter-dir", str(peft_dir), "--base-gguf", str(model.path)),
        *("--out", str(out), "--name", name),
    )
    return out
