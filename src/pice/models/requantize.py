"""Derived models: a bundled GGUF requantised locally into another weight format.

``llama_model_quantize`` (llama.cpp, through llama-cpp-python: the ``edge`` extra) writes
``<stem>.gguf.partial``; only a complete file that starts with the GGUF magic is renamed into
place, with a marker that records its sha256 and its recipe (format + the source's pinned
sha256). The same invariant as joined models holds: a file is used only while its marker
matches it, and a marker for another recipe (a different source) is not trusted, so the file
is rebuilt. A file changed since it was marked is rehashed against the marker, as for joined
models; there is no catalog sha256 to compare with, because the exact bytes depend on the
llama.cpp build (with one build the output is deterministic).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pice.errors import ModelProvisioningError
from pice.models.catalog import DerivedModel
from pice.models.provision import (
    ModelState,
    cache_lock,
    derive_file,
    is_derived,
    is_gguf,
    partial_path,
    progress_bar,
    read_marker,
    verify_file,
)

logger = logging.getLogger(__name__)

# llama_ftype values (llama.h) of the formats worth deriving on a CPU edge.
WEIGHT_FORMATS = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "iq4_nl": 25}
_POLL_SECONDS = 0.2


def requantize(
    source: Path,
    dest: Path,
    weight_format: str,
    *,
    threads: int | None = None,
    approx_size: int = 0,
    progress: bool = False,
) -> None:
    """Write ``source`` requantised to ``weight_format`` at ``dest`` (any existing file is lost).

    The conversion runs in llama.cpp (no GIL held); the bar follows the output file's growth.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ModelProvisioningError(
            f"unknown weight format {weight_format!r}: use one of {', '.join(WEIGHT_FORMATS)}"
        )
    try:
        import llama_cpp
        from llama_cpp import _logger as llama_logger
    except ImportError as exc:
        raise ModelProvisioningError(
            "requantising a model needs llama-cpp-python: pip install 'pice[edge]'"
        ) from exc
    if not source.is_file():
        raise ModelProvisioningError(f"cannot requantise {source}: no such file")
    # llama.cpp logs a line per tensor; show them only when this process logs at DEBUG.
    llama_logger.set_verbose(logger.isEnabledFor(logging.DEBUG))
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or os.cpu_count() or 1
    params.ftype = WEIGHT_FORMATS[weight_format]
    params.allow_requantize = True
    status: list[int] = []

    def run() -> None:
        status.append(
            llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), params)
        )

    # The output's size is only known afterwards; the source's is a fair guess for the bar.
    total = approx_size if approx_size > 0 else source.stat().st_size
    worker = threading.Thread(target=run, name="requantize", daemon=True)
    with progress_bar(total, f"requantise to {weight_format}", progress) as bar:
        worker.start()
        while worker.is_alive():
            worker.join(_POLL_SECONDS)
            written = dest.stat().st_size if dest.exists() else 0
            bar.update(max(0, min(written, total) - bar.n))
    if status != [0]:
        raise ModelProvisioningError(
            f"llama.cpp could not requantise {source.name} to {weight_format} "
            f"(status {status[0] if status else 'none'})"
        )


def derive(
    model: DerivedModel,
    source: Callable[[], Path],
    cache_dir: Path,
    *,
    pull: bool = True,
    progress: bool = True,
) -> Path:
    """A marked ``<cache>/<stem>.gguf`` requantised from the file ``source()`` provides.

    ``source`` is only called when the file has to be (re)built: a marked file is used even
    when its source is no longer in the cache (the recipe names the source's sha256).

    - marker for this recipe matches the file: returned at once (one ``stat``);
    - file changed since it was marked: rehashed if ``pull``, else refused;
    - missing, corrupt, or made from another source: rebuilt if ``pull``, else refused.
    """
    path = model.path_in(cache_dir)
    with cache_lock(cache_dir, model.file_stem):
        if is_derived(path, model.recipe):
            return path
        if not pull:
            state = "out of date" if path.exists() else "not provisioned"
            raise ModelProvisioningError(
                f"model {model.name!r} is {state} in {cache_dir}; "
                f"run `pice models pull {model.name}`"
            )
        marker = read_marker(path)
        if marker is not None and marker.recipe == model.recipe and path.exists():
            logger.info("verifying %s (changed since it was marked)", path)
            if verify_file(
                path, sha256=marker.sha256, size=marker.size, progress=progress, recipe=model.recipe
            ):
                return path
            logger.warning("%s does not match its marker; requantising it again", path)

        def make(partial: Path) -> None:
            requantize(
                source(),
                partial,
                model.weight_format,
                approx_size=model.approx_size,
                progress=progress,
            )
            if not is_gguf(partial):
                raise ModelProvisioningError(f"requantised {model.name} is not a GGUF file")

        return derive_file(path, model.recipe, make)


def derived_state(model: DerivedModel, cache_dir: Path) -> ModelState:
    """Like :func:`pice.models.provision.model_state`, for a derived model."""
    path = model.path_in(cache_dir)
    if not path.exists():
        return ModelState.PARTIAL if partial_path(path).exists() else ModelState.MISSING
    if is_derived(path, model.recipe):
        return ModelState.VERIFIED
    return ModelState.UNVERIFIED


def verify_derived(model: DerivedModel, cache_dir: Path, *, progress: bool = False) -> bool:
    """Rehash the file against its marker's sha256; False without a marker for this recipe."""
    path = model.path_in(cache_dir)
    marker = read_marker(path)
    if marker is None or marker.recipe != model.recipe:
        return False
    return verify_file(
        path, sha256=marker.sha256, size=marker.size, progress=progress, recipe=model.recipe
    )
