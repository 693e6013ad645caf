"""A real vLLM server, started once per test session (about 2-5 minutes on a CPU)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pice.cloud.vllm import VENV_ENV, VllmServer, prepare_vllm_server
from tests.support.processes import ServerProcess, free_port


def two_cores() -> bool:
    return len(os.sched_getaffinity(0)) >= 2


@pytest.fixture(scope="session")
def vllm_spec() -> VllmServer:
    """The vLLM server description; skips (only) when no vLLM environment is configured."""
    venv = os.environ.get(VENV_ENV)
    if not venv:
        pytest.skip(f"{VENV_ENV} is not set (create one with `make vllm-env`)")
    # Conversion to a safetensors checkpoint happens here, once per machine.
    return prepare_vllm_server(
        "qwen2.5-coder-0.5b-instruct",
        port=free_port(),
        venv=Path(venv),
        # As in `pice up`: the cloud on the first core, edge agents on the other.
        cores="0" if two_cores() else None,
    )


@pytest.fixture(scope="session")
def vllm_server(
    vllm_spec: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A running vLLM; failing to start is a test failure, not a skip."""
    server = ServerProcess(
        argv=vllm_spec.argv(),
        port=vllm_spec.port,
        log_path=tmp_path_factory.mktemp("vllm") / "vllm.log",
        env=vllm_spec.env(),
        ready_path=vllm_spec.ready_path,
    )
    server.start(timeout=VllmServer.startup_timeout_s)
    try:
        yield server
    finally:
        server.stop()
