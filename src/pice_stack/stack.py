"""``pice up``: the whole system on one machine — a cloud, edge agents and the gateway.

The embedded default needs nothing but this package and the bundled models: the "cloud" is an
edge agent serving the 1.5B model through its OpenAI chat endpoint, two edge agents serve the
0.5B model, and the gateway fronts them on 127.0.0.1:8000. ``--cloud vllm`` puts a real vLLM
server in the cloud's place. Each server is a child process in its own process group, pinned
to its own core where the machine has several, so the cloud and the edges do not steal each
other's CPU, as they would not on real hardware.

:class:`Supervisor` owns the children: it starts them, waits for their readiness endpoints,
and stops every one of them (SIGTERM to the group, then SIGKILL) on Ctrl-C, on SIGTERM, or as
soon as any one of them dies. :func:`launch_stack` builds the stack from a :class:`StackSpec`;
the benchmarks reuse it to set up their testbed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import httpx
import yaml

from pice.cloud.vllm import VllmServer, prepare_vllm_server, taskset_argv
from pice.command import pice_argv
from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model

logger = logging.getLogger(__name__)

CloudKind = Literal["edge", "vllm"]
_POLL_S = 0.5
_STOP_GRACE_S = 15.0


class StackError(RuntimeError):
    """A child failed to start or died; the message carries the tail of its log."""


# --------------------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ChildSpec:
    """One server to run: its command, where it listens and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"
    ready_path: str = "/ready"
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 300.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if ``pice up`` itself is killed (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildProcess:
    """A started child in its own session, so signals reach its whole process group."""

    def __init__(self, spec: ChildSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.started_at = time.monotonic()
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def is_ready(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.spec.url + self.spec.ready_path).status_code == 200
        except httpx.HTTPError:
            return False

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children, waits until they are ready, and stops all of them together."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[ChildProcess] = []
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, spec: ChildSpec) -> ChildProcess:
        # Another server on the port would answer our readiness probe in the child's place.
        if not port_is_free(spec.host, spec.port):
            raise StackError(f"cannot start {spec.name}: {spec.host}:{spec.port} is in use")
        log_path = self.run_dir / f"{spec.name}.log"
        logger.info("starting %s on port %d (log: %s)", spec.name, spec.port, log_path)
        logger.debug("%s argv: %s", spec.name, " ".join(spec.argv))
        child = ChildProcess(spec, log_path)
        self.children.append(child)
        return child

    def wait_ready(self, children: Sequence[ChildProcess]) -> None:
        """Block until every child answers its readiness path with 200.

        Raises :class:`StackError` as soon as one of them exits or overruns its timeout.
        """
        pending = list(children)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for child in list(pending):
                    if child.exited():
                        raise StackError(_died(child))
                    if child.is_ready(client):
                        waited = time.monotonic() - child.started_at
                        logger.info("%s is ready (%.1f s)", child.name, waited)
                        pending.remove(child)
                    elif time.monotonic() - child.started_at > child.spec.ready_timeout_s:
                        raise StackError(
                            f"{child.name} not ready after {child.spec.ready_timeout_s:.0f} s; "
                            f"log {child.log_path}:\n{child.log_tail()}"
                        )
                if pending:
                    time.sleep(_POLL_S)

    def first_exited(self) -> ChildProcess | None:
        return next((child for child in self.children if child.exited()), None)

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """SIGTERM every group (the gateway first: it fronts the others), then SIGKILL."""
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", child.name, grace_s)
            # Grandchildren (vLLM's engine core) may outlive their parent: sweep the group.
            child.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like uvicorn, so a port in TIME_WAIT counts as free and only a listener does not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def exit_description(returncode: int | None) -> str:
    """``exited with code 3`` or ``was killed by SIGSEGV (Segmentation fault)``."""
    if returncode is None:
        return "is still running"
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"was killed by signal {-returncode}"
    return f"was killed by {sig.name} ({signal.strsignal(sig) or sig.name})"


def _died(child: ChildProcess) -> str:
    return (
        f"{child.name} (pid {child.pid}) {exit_description(child.proc.returncode)}; "
        f"last lines of its log {child.log_path}:\n{child.log_tail()}"
    )


# --------------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class StackSpec:
    """What ``pice up`` runs. Edge ``i`` (0-based) listens on ``edge_base_port + i``."""

    cloud: CloudKind = "edge"
    cloud_model: str = "qwen2.5-coder-1.5b-instruct"
    edge_model: str = "qwen2.5-coder-0.5b-instruct-q8_0"
    edges: int = 2
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    cloud_port: int = 8100
    edge_base_port: int = 8101
    threads: int = 1
    pin: bool = True
    gateway: bool = True
    api_keys: tuple[str, ...] = ()
    run_dir: Path | None = None
    cache_dir: Path | None = None
    vllm_venv: Path | None = None
    # Extra settings merged into the generated gateway YAML (benchmarks tune the gateway).
    gateway_overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CorePlan:
    cloud: str | None
    edges: tuple[str | None, ...]


def plan_cores(edges: int, *, pin: bool, available: Sequence[int] | None = None) -> CorePlan:
    """Cloud on the first core, edges round-robin over the rest; nothing pinned on one core."""
    cores = sorted(available if available is not None else os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return CorePlan(cloud=None, edges=(None,) * edges)
    rest = cores[1:]
    return CorePlan(
        cloud=str(cores[0]), edges=tuple(str(rest[i % len(rest)]) for i in range(edges))
    )


def gateway_config(
    spec: StackSpec, cloud_base_url: str, cloud_model: str, edge_urls: Sequence[str]
) -> dict[str, Any]:
    """The gateway's settings, in the schema of ``pice_gateway.settings``."""
    config: dict[str, Any] = {
        "host": spec.host,
        "port": spec.gateway_port,
        "api_keys": list(spec.api_keys),
        "cloud": {"base_url": cloud_base_url, "model": cloud_model, "api_key": None},
        "edges": [
            {"name": f"edge-{i + 1}", "url": url, "token": None} for i, url in enumerate(edge_urls)
        ],
    }
    config.update(spec.gateway_overrides)
    return config


class RunningStack:
    """A launched stack: where each server is, and how to stop it."""

    def __init__(
        self,
        spec: StackSpec,
        supervisor: Supervisor,
        *,
        cloud_base_url: str,
        cloud_model: str,
        edge_urls: Sequence[str],
        config_path: Path | None,
    ) -> None:
        self.spec = spec
        self.supervisor = supervisor
        self.cloud_base_url = cloud_base_url
        self.cloud_model = cloud_model
        self.edge_urls = list(edge_urls)
        self.config_path = config_path

    @property
    def run_dir(self) -> Path:
        return self.supervisor.run_dir

    @property
    def gateway_url(self) -> str | None:
        if not self.spec.gateway:
            return None
        return f"http://{self.spec.host}:{self.spec.gateway_port}"

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.supervisor.children]

    def wait(self) -> int:
        """Block until a child dies (returns 1, after logging why); Ctrl-C propagates."""
        while True:
            dead = self.supervisor.first_exited()
            if dead is not None:
                logger.error("%s", _died(dead))
                return 1
            time.sleep(_POLL_S)

    def stop(self) -> None:
        self.supervisor.stop()

    def __enter__(self) -> RunningStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def launch_stack(spec: StackSpec) -> RunningStack:
    """Provision the models, start cloud and edges, wait for them, then start the gateway.

    On any failure (or Ctrl-C) everything already started is stopped before the error
    propagates. Raises :class:`ModelProvisioningError` or :class:`StackError`.
    """
    run_dir = spec.run_dir or Path(tempfile.mkdtemp(prefix="pice-up-"))
    env = {"PICE_MODEL_CACHE": str(spec.cache_dir)} if spec.cache_dir else {}
    cores = plan_cores(spec.edges, pin=spec.pin)
    # Provision first, in the foreground with progress bars, so children only load files.
    edge_model = resolve_model(spec.edge_model, cache_dir=spec.cache_dir)
    cloud_spec, cloud_model, cloud_base_url = _cloud_child(spec, cores.cloud, env)

    supervisor = Supervisor(run_dir)
    try:
        started = [supervisor.start(cloud_spec)]
        edge_urls = []
        for i in range(spec.edges):
            port = spec.edge_base_port + i
            argv = pice_argv(
                *("edge", "serve", "--model", str(edge_model.path), "--model-id", edge_model.name),
                *("--host", spec.host, "--port", str(port), "--threads", str(spec.threads)),
            )
            child = ChildSpec(
                name=f"edge-{i + 1}",
                argv=tuple(taskset_argv(argv, cores.edges[i])),
                port=port,
                host=spec.host,
                env=env,
            )
            started.append(supervisor.start(child))
            edge_urls.append(child.url)
        supervisor.wait_ready(started)

        config_path = None
        if spec.gateway:
            config_path = run_dir / "gateway.yaml"
            config = gateway_config(spec, cloud_base_url, cloud_model, edge_urls)
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            gateway = ChildSpec(
                name="gateway",
                argv=pice_argv("gateway", "--config", str(config_path)),
                port=spec.gateway_port,
                host=spec.host,
                ready_timeout_s=60.0,
            )
            supervisor.wait_ready([supervisor.start(gateway)])
    except BaseException:
        supervisor.stop()
        raise
    return RunningStack(
        spec,
        supervisor,
        cloud_base_url=cloud_base_url,
        cloud_model=cloud_model,
        edge_urls=edge_urls,
        config_path=config_path,
    )


def _cloud_child(
    spec: StackSpec, core: str | None, env: Mapping[str, str]
) -> tuple[ChildSpec, str, str]:
    """The cloud server's child spec, its model name and its OpenAI base URL."""
    if spec.cloud == "vllm":
        server: VllmServer = prepare_vllm_server(
            spec.cloud_model,
            port=spec.cloud_port,
            venv=spec.vllm_venv,
            cores=core,
            cache_dir=spec.cache_dir,
        )
        child = ChildSpec(
            name="cloud-vllm",
            argv=tuple(server.argv()),
            port=spec.cloud_port,
            host=server.host,
            ready_path=server.ready_path,
            env={**env, **server.env()},
            ready_timeout_s=server.startup_timeout_s,
        )
        return child, server.served_model_name, server.openai_base_url
    model = resolve_model(spec.cloud_model, cache_dir=spec.cache_dir)
    argv = pice_argv(
        *("edge", "serve", "--model", str(model.path), "--model-id", model.name),
        *("--host", spec.host, "--port", str(spec.cloud_port), "--threads", str(spec.threads)),
    )
    child = ChildSpec(
        name="cloud",
        argv=tuple(taskset_argv(argv, core)),
        port=spec.cloud_port,
        host=spec.host,
        env=env,
    )
    return child, model.name, f"{child.url}/v1"


# ----------------------------------------------------------------------------------- the CLI


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = StackSpec()
    parser = subparsers.add_parser(
        "up", help="run cloud, edge agents and gateway on this machine (Ctrl-C stops all)"
    )
    parser.add_argument("--port", type=int, default=defaults.gateway_port, help="gateway port")
    parser.add_argument("--edges", type=int, default=defaults.edges, help="edge agents (2)")
    parser.add_argument(
        "--cloud",
        choices=("edge", "vllm"),
        default=defaults.cloud,
        help="edge: llama.cpp stand-in (default); vllm: a real vLLM server",
    )
    parser.add_argument("--cloud-model", default=defaults.cloud_model)
    parser.add_argument("--edge-model", default=defaults.edge_model)
    parser.add_argument("--cloud-port", type=int, default=defaults.cloud_port)
    parser.add_argument(
        "--edge-base-port",
        type=int,
        default=defaults.edge_base_port,
        help="first edge port; edge i listens on this + i",
    )
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help="CPU threads per model server (1)"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin servers to cores with taskset",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where the children's logs and the gateway config go",
    )
    parser.add_argument(
        "--vllm-venv",
        type=Path,
        default=None,
        help="vLLM environment (default: $PICE_VLLM_VENV or .venv-vllm)",
    )
    parser.set_defaults(handler=run)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind alike, so one ``finally`` stops the children in both cases.

    SIGINT is installed explicitly too: a process started in the background by a
    non-interactive shell inherits SIGINT as ignored, and Python then never raises
    KeyboardInterrupt, so Ctrl-C (or ``kill -INT``) would leave the stack running.
    """
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    spec = StackSpec(
        cloud=args.cloud,
        cloud_model=args.cloud_model,
        edge_model=args.edge_model,
        edges=args.edges,
        gateway_port=args.port,
        cloud_port=args.cloud_port,
        edge_base_port=args.edge_base_port,
        threads=args.threads,
        pin=args.pin,
        run_dir=args.run_dir or Path(tempfile.mkdtemp(prefix="pice-up-")),
        vllm_venv=args.vllm_venv,
    )
    # One line per readiness probe would bury the children's progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = sys.stdout
    out.write(f"pice up: logs in {spec.run_dir}\n")
    out.flush()
    stack: RunningStack | None = None
    with _sigterm_as_interrupt():
        try:
            stack = launch_stack(spec)
            out.write(_banner(stack))
            out.flush()
            code = stack.wait()
        except KeyboardInterrupt:
            code = 0
        except (ModelProvisioningError, StackError) as exc:
            sys.stderr.write(f"pice up: {exc}\n")
            code = 1
        finally:
            if stack is not None:
                # A second Ctrl-C must not cut the shutdown of the children short.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                out.write("pice up: stopping\n")
                out.flush()
                stack.stop()
    return code


_EXAMPLE_QUESTION = "Give me three tips for better sleep."
_EXAMPLE_BODY = {
    "model": "pice",
    "stream": True,
    "messages": [{"role": "user", "content": _EXAMPLE_QUESTION}],
}


def _banner(stack: RunningStack) -> str:
    url = stack.gateway_url
    edges = ", ".join(stack.edge_urls)
    return f"""
PICE is up.
  gateway  {url}/v1   (models: pice, pice-progressive, pice-cloud)
  cloud    {stack.cloud_base_url}   ({stack.cloud_model})
  edges    {edges}
  logs     {stack.run_dir}

Try it with curl:
  curl -N {url}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{json.dumps(_EXAMPLE_BODY)}'

or with the OpenAI SDK:
  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="unused")
  stream = client.chat.completions.create(
      model="pice", stream=True,
      messages=[{{"role": "user", "content": "{_EXAMPLE_QUESTION}"}}])
  for chunk in stream:
      print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)

Ctrl-C stops everything.
"""
