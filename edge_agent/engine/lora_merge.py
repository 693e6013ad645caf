"""Fold a llama.cpp LoRA adapter into the model's own weights (``pice edge serve --lora-merge``).

llama.cpp applies an adapter on every decode: for each adapted weight it adds
``scale · alpha / rank · B·(A·x)`` beside ``W·x``, four extra graph nodes run outside the
repacked quantised kernels, which cost the 0.5B edge 7–8% of its decode speed and 13% of its
prefill (docs/fine-tuning.md, "Speed of an adapter"). It has no call that merges an adapter at
load time, so this module writes the model once with ``W + scale · alpha / rank · B·A`` in
place of each adapted ``W``, requantised to ``W``'s own type with the ``gguf`` package
(llama.cpp's own Python reader and writer), and the engine loads that file as a plain model.

Only weight types the ``gguf`` package can quantise take the sum (Q8_0, Q4_0, Q5_0, BF16,
F16, F32, ...; not the K-quants): merge into the Q8_0 edge model. The file is a derived file of
the model cache, keyed by the base's and the adapter's sha256 and the scale, so a restart
reuses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pice.errors import ModelProvisioningError
from pice.models.merged import mark_used
from pice.models.provision import cache_lock, derive_file, file_sha256

logger = logging.getLogger(__name__)

# Bump when the written file would differ for the same inputs.
RECIPE = "pice-lora-merge-1"


@dataclass(frozen=True)
class MergeReport:
    path: Path
    merged_weights: int
    rank: int
    alpha: float
    scale: float
    # The largest change to any weight before requantising: how far the adapter moves it.
    largest_change: float
    seconds: float
    cached: bool = False


def _gguf() -> Any:
    try:
        import gguf  # only --lora-merge needs it: not imported at start
    except ImportError as error:  # pragma: no cover - the edge extra installs it
        raise ModelProvisioningError(
            "--lora-merge needs the gguf package: pip install 'pice[edge]' (or gguf)"
        ) from error
    return gguf


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


# Tensor types ggml's matrix product cannot take as its first operand: llama.cpp loads an
# adapter with such factors and then crashes the process on its first decode (F64 seen here).
UNUSABLE_FACTOR_TYPES = frozenset({"F64", "I8", "I16", "I32", "I64"})


def check_adapter(path: Path) -> None:
    """Refuse an adapter GGUF llama.cpp would load but not compute with (by its header).

    A file the ``gguf`` package cannot read is left to llama.cpp's own loader, which refuses
    what it cannot read with its own error.
    """
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception:  # a truncated or foreign file fails in many ways
        return
    bad = sorted(
        {t.tensor_type.name for t in reader.tensors if t.tensor_type.name in UNUSABLE_FACTOR_TYPES}
    )
    if bad:
        raise ModelProvisioningError(
            f"LoRA adapter {path} has {', '.join(bad)} factors, which llama.cpp cannot compute "
            "with: export it with F32 (or F16) tensors"
        )


def adapter_pairs(
    reader: Any, base_shapes: dict[str, tuple[int, int]]
) -> tuple[float, int, dict[str, tuple[Any, Any]]]:
    """The adapter's alpha, rank and ``{weight name: (A, B)}`` (float32, A (rank, in), B (out,
    rank)), checked against the base's weight shapes ``(out, in)``."""
    if _field(reader, "general.type") != "adapter" or _field(reader, "adapter.type") != "lora":
        raise ModelProvisioningError("not a llama.cpp LoRA adapter GGUF (general.type adapter)")
    alpha = float(_field(reader, "adapter.lora.alpha") or 0.0)
    parts: dict[str, dict[str, Any]] = {}
    for tensor in reader.tensors:
        name, _, part = tensor.name.rpartition(".lora_")
        if part not in ("a", "b"):
            raise ModelProvisioningError(f"adapter tensor {tensor.name} is not a LoRA factor")
        parts.setdefault(name, {})[part] = np.asarray(tensor.data, dtype=np.float32)
    if not parts:
        raise ModelProvisioningError("the adapter has no LoRA factors")
    pairs: dict[str, tuple[Any, Any]] = {}
    ranks = set()
    for name, pair in sorted(parts.items()):
        if set(pair) != {"a", "b"}:
            raise ModelProvisioningError(f"adapter weight {name} lacks its lora_a or lora_b")
        if name not in base_shapes:
            raise ModelProvisioningError(f"adapter weight {name} is not a weight of the model")
        a, b = pair["a"], pair["b"]
        n_out, n_in = base_shapes[name]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != n_in or b.shape != (n_out, a.shape[0]):
            raise ModelProvisioningError(
                f"adapter weight {name}: factors {a.shape}, {b.shape} do not fit ({n_out}, {n_in})"
            )
        ranks.add(a.shape[0])
        pairs[name] = (a, b)
    if len(ranks) != 1:
        raise ModelProvisioningError(f"the adapter's factors have several ranks: {sorted(ranks)}")
    return alpha, ranks.pop(), pairs


def merge_lora(base: Path, adapter: Path, out: Path, scale: float = 1.0) -> MergeReport:
    """Write ``base`` with ``adapter`` folded in at ``scale`` to ``out`` (atomically)."""
    gguf = _gguf()
    started = time.perf_counter()
    model = gguf.GGUFReader(str(base))
    shapes = {
        t.name: (int(t.shape[1]), int(t.shape[0])) for t in model.tensors if len(t.shape) == 2
    }
    lora = gguf.GGUFReader(str(adapter))
    alpha, rank, pairs = adapter_pairs(lora, shapes)
    arch = _field(model, "general.architecture")
    if _field(lora, "general.architecture") != arch:
        raise ModelProvisioningError(f"the adapter is not for this model's architecture ({arch})")
    # What llama.cpp multiplies B·A·x by (llama-graph.cpp, build_lora_mm).
    factor = scale * alpha / rank if alpha else scale

    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in model.fields.values():
        # The writer writes the architecture and the GGUF header fields itself.
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    arrays: list[Any] = []
    largest = 0.0
    for tensor in model.tensors:
        array = tensor.data
        if tensor.name in pairs:
            a, b = pairs[tensor.name]
            weight = gguf.quants.dequantize(array, tensor.tensor_type).astype(np.float32)
            delta = factor * (b @ a)
            largest = max(largest, float(np.abs(delta).max()))
            try:
                array = gguf.quants.quantize(weight + delta, tensor.tensor_type)
            except NotImplementedError as error:
                tmp.unlink(missing_ok=True)
                raise ModelProvisioningError(
                    f"{tensor.name} is {tensor.tensor_type.name}, which cannot be requantised "
                    "here: merge into a Q8_0 (or F16) model, or serve the adapter unmerged"
                ) from error
        writer.add_tensor_info(
            tensor.name, array.shape, array.dtype, array.nbytes, tensor.tensor_type
        )
        arrays.append(array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for array in arrays:
        writer.write_tensor_data(array, tensor_endianess=model.endianess)
    writer.close()
    tmp.replace(out)
    return MergeReport(out, len(pairs), rank, alpha, scale, largest, time.perf_counter() - started)


def merged_model(base: Path, adapter: Path, scale: float, cache_dir: Path) -> MergeReport:
    """The merged model for these inputs from ``cache_dir``, written first when missing.

    A derived file of the model cache (:func:`pice.models.provision.derive_file`): written
    under the cache's lock for its name (two agents started together merge once), renamed into
    place only when complete, and marked with its sha256 and a recipe naming both inputs'
    sha256 and the scale, so another adapter, model or scale is another file.
    """
    recipe = f"{RECIPE} base={file_sha256(base)} adapter={file_sha256(adapter)} scale={scale!r}"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    out = cache_dir / f"{base.stem}+{adapter.stem}-{key}.gguf"
    reports: list[MergeReport] = []

    def make(partial: Path) -> None:
        logger.info("merging adapter %s into %s at scale %s", adapter, base, scale)
        reports.append(merge_lora(base, adapter, partial, scale))

    with cache_lock(cache_dir, out.stem):
        derive_file(out, recipe, make)
        mark_used(out)  # what `pice models prune-merged` reads
    if not reports:
        return MergeReport(out, 0, 0, 0.0, scale, 0.0, 0.0, cached=True)
    report = replace(reports[0], path=out)
    logger.info(
        "merged %d weights (rank %d, alpha %g; largest change %.3g) into %s in %.1f s",
        report.merged_weights,
        report.rank,
        report.alpha,
        report.largest_change,
        out,
        report.seconds,
    )
    return report
