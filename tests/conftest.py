"""Fixtures shared by every test tier."""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """The CLI tests run ``pice gateway`` / ``pice edge serve`` in process, which configure the
    root logger (``pice.logs.configure_logging``); later tests get it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos",
        action="store_true",
        help="also run the tests marked chaos (the soak; `make chaos` sets it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``chaos`` run only with ``--chaos``: minutes each, not for every run."""
    if config.getoption("--chaos"):
        return
    skip = pytest.mark.skip(reason="chaos suite: run with --chaos (make chaos)")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


def pytest_report_header() -> list[str]:
    """Which CPU kernels llama.cpp uses in this run, so a log shows what the model tests ran on.

    Machines differ (AVX2-only, AVX-512, AMX), and llama.cpp picks different kernels on each.
    """
    from edge_agent.engine.cpu import cpu_flags

    lines = [f"cpu flags: {' '.join(sorted(cpu_flags())) or 'unknown'}"]
    try:
        from edge_agent.engine.cpu import choose_kernels
        from edge_agent.engine.llama import system_info
    except ImportError as exc:  # the unit tier runs without llama-cpp-python
        return [*lines, f"llama.cpp: not importable ({exc})"]
    info = system_info()
    choice = choose_kernels(info)
    return [*lines, f"llama.cpp: {info}", f"llama.cpp extra weight buffers: {choice.reason}"]
