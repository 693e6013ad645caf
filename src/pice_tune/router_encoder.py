"""``pice tune router-encoder``: fine-tune the router's sentence encoder (a LoRA, on CPU).

The router decides outline-or-direct from an embedding; a logistic head over the stock
all-MiniLM-L6-v2 embedding agrees with people's labels only so far, however it is trained
(docs/benchmarks.md, "The router against human labels"). This step fine-tunes the encoder itself
on the router's training questions (a LoRA of rank 8 on its 36 linear layers, 3 epochs, a few
minutes on two cores) in the tuning environment (:mod:`pice_tune.router_worker`), and writes
the LoRA's factors as one ``.npz``. The gateway adds them to the pinned ONNX encoder when it
derives the int8 graph it runs (``pice_gateway.router.quantize``), so the package ships 1.3 MB
of factors, not a second encoder. ``pice router train`` then fits the head on that encoder.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pice.errors import ModelProvisioningError
from pice.models.assets import provision_asset
from pice.models.provision import hash_file
from pice.models.registry import default_cache_dir
from pice_gateway.router.assets import ENCODER_CONFIG, ENCODER_SAFETENSORS, ENCODER_TOKENIZER
from pice_gateway.router.training import DATA_DIR, data_sha256
from pice_tune import router_worker
from pice_tune.steps import find_tune_venv


@dataclass(frozen=True)
class EncoderTuning:
    out: Path
    data: tuple[Path, ...] = (DATA_DIR / "train.jsonl",)
    epochs: int = 3
    rank: int = 8
    lr: float = 5e-4
    seed: int = 0
    threads: int = 2
    # Keep only the first N transformer blocks (None: all six).
    layers: int | None = None
    venv: Path | None = None
    cache_dir: Path | None = None


def model_dir(cache: Path, into: Path) -> Path:
    """The Hugging Face layout of the pinned files (links into the asset cache)."""
    for asset, name in (
        (ENCODER_CONFIG, "config.json"),
        (ENCODER_SAFETENSORS, "model.safetensors"),
        (ENCODER_TOKENIZER, "tokenizer.json"),
    ):
        (into / name).symlink_to(provision_asset(asset, cache))
    return into


def tune_encoder(options: EncoderTuning) -> dict[str, Any]:
    """Train, write ``options.out`` and ``<out>.json`` (the recipe and the data's sha256)."""
    venv = find_tune_venv(options.venv)
    cache = options.cache_dir or default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="pice-router-encoder-") as scratch:
        argv = [
            str(venv / "bin" / "python"),
            router_worker.__file__,
            "--model-dir",
            str(model_dir(cache, Path(scratch))),
            "--data",
            *(str(p) for p in options.data),
            "--out",
            str(options.out),
            "--epochs",
            str(options.epochs),
            "--rank",
            str(options.rank),
            "--lr",
            str(options.lr),
            "--seed",
            str(options.seed),
            "--threads",
            str(options.threads),
            *(("--layers", str(options.layers)) if options.layers is not None else ()),
        ]
        result = subprocess.run(argv, check=False, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ModelProvisioningError(f"pice tune router-encoder failed (exit {result.returncode})")
    summary: dict[str, Any] = json.loads(result.stdout)
    summary["data"] = [p.name for p in options.data]
    summary["data_sha256"] = data_sha256(*options.data)
    summary["base"] = f"{ENCODER_SAFETENSORS.distribution}=={ENCODER_SAFETENSORS.version}"
    summary["sha256"] = hash_file(options.out)
    options.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
