"""LoRA adapters the stack's model servers load: the checks shared by ``--sketch-lora`` and
``--edge-lora``, and the edges' adapter (``pice up --edge-lora ADAPTER.gguf``, issue #13).

With ``--edge-lora`` every edge the stack starts (a profile's included) applies the adapter to
every decode (``pice edge serve --lora``); each edge's ``/v1/load`` names it, and the gateway
names it on each point the edge expanded (``pice.points[].adapter``). The cloud is untouched.

A path of the wrong kind is refused before any process starts: an edge agent given a
directory or a stray file would otherwise load its model and then stay unready, and the stack
would wait minutes for it.
"""

from __future__ import annotations

import math
from pathlib import Path

from pice_stack.supervisor import StackError

_GGUF_MAGIC = b"GGUF"


class LoraPathError(StackError):
    """A LoRA option names something its server cannot load."""


class EdgeLoraError(LoraPathError):
    """``--edge-lora`` (or its scale) is something the edge agents cannot load."""


def is_gguf(path: Path) -> bool:
    """Whether the file at ``path`` starts with GGUF's magic."""
    with path.open("rb") as file:
        return file.read(len(_GGUF_MAGIC)) == _GGUF_MAGIC


def require_adapter_gguf(
    path: Path, *, option: str, loader: str, error: type[LoraPathError], directory_hint: str
) -> Path:
    """``path`` as an absolute path if it is a GGUF file, else ``error``.

    ``option`` is the flag that named it, ``loader`` what loads it ("the embedded cloud"),
    ``directory_hint`` what a directory is for instead (a peft adapter is one).
    """
    if path.is_dir():
        raise error(
            f"{option} {path} is a directory; {loader} loads the llama.cpp adapter GGUF "
            f"(pice tune export), {directory_hint}"
        )
    if not path.is_file():
        raise error(f"{option} {path}: no such file")
    if not is_gguf(path):
        raise error(
            f"{option} {path} is not a GGUF; {loader} loads the llama.cpp adapter GGUF "
            "that pice tune export writes"
        )
    return path.absolute()


def edge_adapter_args(adapter_gguf: Path, scale: float | None = None) -> tuple[str, ...]:
    """The arguments of ``pice edge serve`` applying ``adapter_gguf`` to every decode."""
    path = require_adapter_gguf(
        adapter_gguf,
        option="--edge-lora",
        loader="the edge agent",
        error=EdgeLoraError,
        directory_hint="the peft directory is for training and vLLM",
    )
    if scale is None:
        return ("--lora", str(path))
    # The agent's settings refuse these too, but only once it has started (and then it exits).
    if not math.isfinite(scale) or scale < 0:
        raise EdgeLoraError(f"--edge-lora-scale {scale:g}: must be a finite number >= 0")
    # str() of a float reads back as the same float (":g" would round it).
    return ("--lora", str(path), "--lora-scale", str(scale))
