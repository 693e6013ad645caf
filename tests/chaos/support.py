"""Helpers of the fault suite: requests, SSE parsing, fake upstreams in their own processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]

# What every fake edge writes when they all run "the same model" (``EdgeScript.author``).
SAME_MODEL = "edge"
EXPECTED = (
    "1. **Alpha point**: Body of point 1 from edge.\n"
    "2. **Beta point**: Body of point 2 from edge.\n"
    "3. **Gamma point**: Body of point 3 from edge.\n"
)


def ask(model: str = "pice", **kwargs: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "How to stay healthy?"}],
        **kwargs,
    }


def parse_sse(lines: list[str]) -> list[Any]:
    """The ``data:`` payloads of SSE ``lines`` (JSON decoded, ``[DONE]`` kept as the string)."""
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream_lines(url: str, body: dict[str, Any], timeout: float = 60.0) -> list[str]:
    """Every line of one streamed answer (the status must be 200)."""
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        return list(response.iter_lines())


def content(payloads: list[Any]) -> str:
    """The answer text of a stream's payloads."""
    parts: list[str] = []
    for payload in payloads:
        if isinstance(payload, dict):
            for choice in payload.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def errors(payloads: list[Any]) -> list[dict[str, Any]]:
    return [p["error"] for p in payloads if isinstance(p, dict) and "error" in p]


def pice_report(payloads: list[Any]) -> dict[str, Any]:
    """The ``pice`` report a finished stream carries on its last chunk."""
    reports = [p["pice"] for p in payloads if isinstance(p, dict) and "pice" in p]
    assert len(reports) == 1, payloads[-3:]
    report: dict[str, Any] = reports[0]
    return report


def fake_process(kind: str, log_dir: Path, name: str, *args: str) -> ServerProcess:
    """A fake upstream (``tests.chaos.fake_server``) in a child process, not started yet."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.chaos.fake_server", kind, "--port", str(port), *args]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return ServerProcess(
        argv, port, log_dir / f"{name}.log", env={"PYTHONPATH": path}, ready_path="/health"
    )


def edge_process(log_dir: Path, name: str, token_delay: float) -> ServerProcess:
    """A fake edge writing :data:`SAME_MODEL`'s words, ``token_delay`` seconds per token."""
    return fake_process(
        "edge", log_dir, name, "--name", name, "--author", SAME_MODEL,
        "--token-delay", str(token_delay),
    )  # fmt: skip
