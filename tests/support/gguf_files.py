"""Small GGUF files written with the ``gguf`` package: models and LoRA adapters for tests.

No torch and no tuning environment: a LoRA adapter here is random factors written in
llama.cpp's adapter layout (``<weight>.lora_a`` of shape (rank, in) and ``<weight>.lora_b`` of
shape (out, rank), ``adapter.lora.alpha``), which is what ``pice tune export`` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np


def write_lora(
    out: Path,
    arch: str,
    shapes: Mapping[str, tuple[int, int]],
    *,
    rank: int = 4,
    alpha: float = 4.0,
    b_scale: float = 1.0,
    seed: int = 0,
) -> Path:
    """A random adapter over the weights ``shapes`` names ({name: (out, in)})."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, (n_out, n_in) in sorted(shapes.items()):
        # float32, as llama.cpp wants its factors (an F64 factor crashes its decode).
        a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float32)
        b = (rng.standard_normal((n_out, rank)) * b_scale).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    _close(writer)
    return out


def write_model(out: Path, arch: str, tensors: Iterable[tuple[str, Any, Any]]) -> Path:
    """A GGUF of ``(name, float32 array, type)`` tensors, each quantised to its type, and one
    metadata key of its own (``test.marker``)."""
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string("test.marker", "kept")
    for name, array, kind in tensors:
        data = gguf.quants.quantize(np.asarray(array, dtype=np.float32), kind)
        writer.add_tensor(name, data, raw_dtype=kind)
    _close(writer)
    return out


def weight_shapes(path: Path, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``{name: (out, in)}`` of a model file's 2-D weights."""
    reader = gguf.GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    return {n: (int(by_name[n].shape[1]), int(by_name[n].shape[0])) for n in names}


def _close(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
