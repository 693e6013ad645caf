"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path

import pytest


def _models_dir() -> Path:
    from pice.models.registry import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    """The bundled Qwen2.5-Coder-0.5B-Instruct GGUF, provisioned by ``pice models pull``."""
    from pice.models.registry import resolve_model

    return resolve_model("qwen2.5-coder-0.5b-instruct", pull=False).path
