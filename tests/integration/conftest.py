"""A real vLLM server, started once per test session (about 2-5 minutes on a CPU)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pice.cloud.vllm import VENV_ENV, VllmServer, prepare_vllm_server
from pice_stack.stack import StackSpec, gateway_config
from tests.support.processes import ServerProcess, free_port, pice_argv


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


@contextlib.contextmanager
def running_vllm(spec: VllmServer, log_dir: Path) -> Iterator[ServerProcess]:
    """``spec`` running until the block exits; failing to start raises (a failure, not a skip)."""
    server = ServerProcess(
        argv=spec.argv(),
        port=spec.port,
        log_path=log_dir / "vllm.log",
        env=spec.env(),
        ready_path=spec.ready_path,
    )
    server.start(timeout=VllmServer.startup_timeout_s)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_gateway(
    spec: StackSpec, cloud: VllmServer, edge_urls: list[str], directory: Path, ready_path: str
) -> Iterator[ServerProcess]:
    """A gateway configured as ``pice up`` configures it for ``spec``, in front of ``cloud``."""
    config = gateway_config(spec, cloud.openai_base_url, cloud.served_model_name, edge_urls)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    server = ServerProcess(
        argv=pice_argv("gateway", "--config", str(path)),
        port=spec.gateway_port,
        log_path=directory / "gateway.log",
        ready_path=ready_path,
    )
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_server(
    vllm_spec: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A running vLLM; failing to start is a test failure, not a skip."""
    with running_vllm(vllm_spec, tmp_path_factory.mktemp("vllm")) as server:
        yield server
