"""Start real servers (edge agents, gateways, vLLM) as subprocesses for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pice import command
from pice.cloud.vllm import taskset_argv


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server running in a child process, reachable at ``base_url``."""

    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/ready"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        env = {**os.environ, **self.env}
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}: {self.argv}\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + self.ready_path, timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s: {self.argv}\n{self.log_tail()}")

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crashed device would vanish."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def pice_argv(*args: str) -> list[str]:
    """``pice ARGS`` run with this interpreter, so tests use the venv they run in."""
    return list(command.pice_argv(*args))


# Tests pin servers the same way `pice up` and the vLLM launcher do.
pinned = taskset_argv


@contextlib.contextmanager
def running(server: ServerProcess, timeout: float = 120.0) -> Iterator[ServerProcess]:
    server.start(timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
