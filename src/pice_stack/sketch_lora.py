"""A sketcher LoRA on the stack's cloud (``pice up --sketch-lora PATH``, issue #13).

The cloud serves the adapter beside its base model under one name, :data:`SKETCH_MODEL`, and
the gateway names it in the outline-only sketch requests (``cloud.sketch_model``). Each cloud
takes the adapter in its own format:

- vLLM (``--cloud vllm``): the peft adapter directory ``pice tune train`` writes (its
  ``adapter_config.json`` beside the weights), loaded with ``--enable-lora --lora-modules``.
  ``--max-lora-rank`` must be at least the adapter's rank and one of the values vLLM accepts,
  so the rank is read from the adapter's config and rounded up.
- the embedded cloud (an edge agent on llama.cpp): the adapter GGUF ``pice tune export``
  writes, loaded with ``--lora-module NAME=PATH`` (a request whose ``model`` is NAME decodes
  with it, any other without).

A path of the wrong kind is refused here, before any process starts: either server would
otherwise fail minutes into its start-up, or start without the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

from pice_stack.lora import LoraPathError, is_gguf, require_adapter_gguf

# The name both clouds serve the adapter under, and the gateway's ``cloud.sketch_model``.
SKETCH_MODEL = "pice-sketcher"

# ``--max-lora-rank`` values vLLM accepts (``vllm.config.lora.MaxLoRARanks``, vLLM 0.32).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class SketchLoraError(LoraPathError):
    """``--sketch-lora`` names something the chosen cloud cannot load."""


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds an adapter of ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise SketchLoraError(f"LoRA rank {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")


def _peft_rank(adapter_dir: Path) -> int:
    """The rank ``r`` of the peft adapter in ``adapter_dir`` (its ``adapter_config.json``)."""
    config_path = adapter_dir / "adapter_config.json"
    if adapter_dir.is_file() and is_gguf(adapter_dir):
        raise SketchLoraError(
            f"--sketch-lora {adapter_dir} is a GGUF; vLLM loads the peft adapter directory "
            "(pice tune train's run/adapter, with adapter_config.json), the GGUF is for "
            "the embedded cloud"
        )
    if not config_path.is_file():
        raise SketchLoraError(
            f"--sketch-lora {adapter_dir}: no adapter_config.json there; vLLM loads a peft "
            "adapter directory (pice tune train's run/adapter)"
        )
    try:
        config = json.loads(config_path.read_text())
        rank = int(config["r"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SketchLoraError(f"{config_path}: no LoRA rank 'r' in it ({exc})") from exc
    if rank < 1:
        raise SketchLoraError(f"{config_path}: LoRA rank {rank} is not positive")
    return rank


def vllm_lora_args(adapter_dir: Path, name: str = SKETCH_MODEL) -> tuple[str, ...]:
    """vLLM's arguments that serve the peft adapter in ``adapter_dir`` as model ``name``."""
    rank = vllm_max_lora_rank(_peft_rank(adapter_dir))
    path = str(adapter_dir.absolute())
    # vLLM reads NAME=PATH only when the item has no comma; otherwise it must be JSON.
    module = json.dumps({"name": name, "path": path}) if "," in path else f"{name}={path}"
    return ("--enable-lora", "--max-lora-rank", str(rank), "--lora-modules", module)


def edge_lora_args(adapter_gguf: Path, name: str = SKETCH_MODEL) -> tuple[str, ...]:
    """The edge agent's arguments that serve the adapter GGUF ``adapter_gguf`` as ``name``."""
    path = require_adapter_gguf(
        adapter_gguf,
        option="--sketch-lora",
        loader="the embedded cloud",
        error=SketchLoraError,
        directory_hint="the peft directory is for --cloud vllm",
    )
    return ("--lora-module", f"{name}={path}")


def sketch_lora_framed(path: Path) -> bool:
    """Whether the sketcher at ``path`` learnt the framed sketch (an opening line, the outline,
    a closing sentence), as its training recorded: ``pice tune export``'s metadata beside an
    adapter GGUF (``<file>.json``, key ``frame``), or ``pice tune train``'s ``recipe.json``
    beside a peft directory (``run/adapter``). False where neither says so: an adapter made
    elsewhere is taken to have learnt the outline alone, which the gateway then asks for."""
    record = path.parent / "recipe.json" if path.is_dir() else path.with_name(path.name + ".json")
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("frame") is True
