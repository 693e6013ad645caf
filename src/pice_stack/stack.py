"""The stack ``pice up`` runs: a cloud, edge agents and the gateway on one machine.

The embedded default needs nothing but this package and the bundled models: the "cloud" is an
edge agent serving the 1.5B model through its OpenAI chat endpoint, two edge agents serve the
0.5B model, and the gateway fronts them on 127.0.0.1:8000. ``--cloud vllm`` puts a real vLLM
server in the cloud's place. Each server is a child process in its own process group, pinned
to its own core where the machine has several, so the cloud and the edges do not steal each
other's CPU, as they would not on real hardware.

:func:`launch_stack` builds the stack from a :class:`StackSpec` and hands the children to a
:class:`~pice_stack.supervisor.Supervisor`; the benchmarks reuse it to set up their testbed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import yaml

from pice.cloud.vllm import VllmServer, prepare_vllm_server, taskset_argv
from pice.command import pice_argv
from pice.models.registry import resolve_model
from pice_stack.lora import EdgeLoraError, edge_adapter_args
from pice_stack.profile import EdgeProfile, LinkProfile, TestbedProfile
from pice_stack.sketch_lora import (
    SKETCH_MODEL,
    edge_lora_args,
    sketch_lora_framed,
    vllm_lora_args,
)
from pice_stack.supervisor import ChildSpec, RestartBudget, StackError, Supervisor

logger = logging.getLogger(__name__)

CloudKind = Literal["edge", "vllm"]


@dataclass(frozen=True)
class StackSpec:
    """What ``pice up`` runs. Edge ``i`` (0-based) listens on ``edge_base_port + i``.

    With a ``profile``, the edges are the profile's (``edges`` is ignored), each with its own
    threads, CPU quota, model and link; edge ``i``'s link proxy listens on
    ``link_base_port + i`` and the gateway reaches the edge through it.
    """

    cloud: CloudKind = "edge"
    cloud_model: str = "qwen2.5-coder-1.5b-instruct"
    edge_model: str = "qwen2.5-coder-0.5b-instruct-q8_0"
    edges: int = 2
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    cloud_port: int = 8100
    edge_base_port: int = 8101
    link_base_port: int = 8201
    threads: int = 1
    pin: bool = True
    gateway: bool = True
    api_keys: tuple[str, ...] = ()
    run_dir: Path | None = None
    cache_dir: Path | None = None
    vllm_venv: Path | None = None
    # Extra settings merged into the generated gateway YAML (benchmarks tune the gateway).
    gateway_overrides: Mapping[str, Any] = field(default_factory=dict)
    profile: TestbedProfile | None = None
    # A sketcher LoRA for the cloud (``pice_stack.sketch_lora``): a peft adapter directory
    # for vLLM, a llama.cpp adapter GGUF for the embedded cloud.
    sketch_lora: Path | None = None
    # A LoRA adapter GGUF every edge applies to every decode (``pice_stack.lora``), at
    # ``edge_lora_scale`` (None = the agent's default, 1.0).
    edge_lora: Path | None = None
    edge_lora_scale: float | None = None
    # Fold ``edge_lora`` into each edge's model at start (``pice edge serve --lora-merge``).
    edge_lora_merge: bool = False

    def edge_profiles(self) -> list[EdgeProfile]:
        """One entry per edge: the profile's, or ``edges`` plain ones."""
        if self.profile is not None:
            return list(self.profile.edges)
        return [EdgeProfile() for _ in range(self.edges)]


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
    """The gateway's settings, in the schema of ``pice_gateway.settings``.

    No secret is written here (the file sits in a run directory others may read): keys and
    tokens reach the gateway through its environment (:func:`gateway_env`).
    """
    cloud: dict[str, Any] = {"base_url": cloud_base_url, "model": cloud_model}
    if spec.sketch_lora is not None:
        cloud["sketch_model"] = SKETCH_MODEL
        if sketch_lora_framed(spec.sketch_lora):
            cloud["sketch_framed"] = True
    config: dict[str, Any] = {
        "host": spec.host,
        "port": spec.gateway_port,
        "cloud": cloud,
        "edges": [{"name": f"edge-{i + 1}", "url": url} for i, url in enumerate(edge_urls)],
    }
    config.update(spec.gateway_overrides)
    return config


def gateway_env(spec: StackSpec, edge_token: str, cloud_api_key: str | None) -> dict[str, str]:
    """The secrets of the gateway child, as ``PICE_*`` variables (never argv: ``ps`` shows it)."""
    env = {"PICE_EDGE_CLIENT__TOKEN": edge_token}
    if spec.api_keys:
        env["PICE_API_KEYS"] = json.dumps(list(spec.api_keys))
    if cloud_api_key is not None:
        env["PICE_CLOUD__API_KEY"] = cloud_api_key
    return env


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
        edge_models: Sequence[str] = (),
        cloud_api_key: str | None = None,
        edge_api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.supervisor = supervisor
        self.cloud_base_url = cloud_base_url
        # What a client of the cloud itself (``pice bench``'s cloud-only mode) must send.
        self.cloud_api_key = cloud_api_key
        self.cloud_model = cloud_model
        # As the gateway reaches each edge: through its link proxy when it has one.
        self.edge_urls = list(edge_urls)
        # The model id each edge serves (its OpenAI chat endpoint answers to it).
        self.edge_models = list(edge_models)
        # The per-run token every edge agent requires (a client of an edge's own chat
        # endpoint, such as ``pice bench``'s fleet-direct mode, must send it).
        self.edge_api_key = edge_api_key
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

    def wait(self, budget: RestartBudget | None = None) -> int:
        """Block until a child dies that is not restarted (returns 1, after logging why);
        Ctrl-C propagates. An edge that dies is restarted (within ``budget``): the gateway
        fails its points over meanwhile, so the stack keeps serving, as PICE would with a
        real device gone; the cloud or the gateway dying stops the stack."""
        budget = budget or RestartBudget()
        while True:
            dead = self.supervisor.wait_any_exit()
            if not dead.spec.restart or not budget.allows(dead.name, time.monotonic()):
                logger.error("%s", dead.exit_report())
                return 1
            logger.error("%s\nrestarting it", dead.exit_report())
            try:
                self.supervisor.restart(dead)
            except StackError as exc:
                logger.error("%s", exc)
                return 1

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
    # A wrong kind of adapter path fails here, before any model is provisioned or started.
    lora_args = cloud_lora_args(spec)
    edge_args = edges_lora_args(spec)
    run_dir = spec.run_dir or Path(tempfile.mkdtemp(prefix="pice-up-"))
    env = {"PICE_MODEL_CACHE": str(spec.cache_dir)} if spec.cache_dir else {}
    # A fresh token per run for every edge agent (and the cloud stand-in, an edge agent too):
    # other local users cannot drive the stack's model servers around the gateway.
    edge_token = secrets.token_urlsafe(32)
    edge_env = {**env, "PICE_EDGE_API_TOKEN": edge_token}
    edge_profiles = spec.edge_profiles()
    cores = plan_cores(len(edge_profiles), pin=spec.pin)
    # Provision first, in the foreground with progress bars, so children only load files.
    edge_models = {
        name: resolve_model(name, cache_dir=spec.cache_dir)
        for name in {ep.model or spec.edge_model for ep in edge_profiles}
    }
    # The embedded cloud is an edge agent and takes the same token; vLLM runs keyless here.
    cloud_api_key = edge_token if spec.cloud == "edge" else None
    cloud_env = edge_env if cloud_api_key is not None else env
    cloud_spec, cloud_model, cloud_base_url = _cloud_child(spec, cores.cloud, cloud_env, lora_args)

    supervisor = Supervisor(run_dir)
    try:
        started = [supervisor.start(cloud_spec)]
        edge_urls = []
        edge_model_ids = []
        for i, edge in enumerate(edge_profiles):
            port = spec.edge_base_port + i
            model = edge_models[edge.model or spec.edge_model]
            threads = edge.threads or spec.threads
            argv = pice_argv(
                *("edge", "serve", "--model", str(model.path), "--model-id", model.name),
                *("--host", spec.host, "--port", str(port), "--threads", str(threads)),
                *edge_args,
            )
            child = ChildSpec(
                name=f"edge-{i + 1}",
                argv=tuple(taskset_argv(argv, cores.edges[i])),
                port=port,
                host=spec.host,
                env=edge_env,
                cpu_quota=edge.cpu_quota,
                restart=True,
            )
            started.append(supervisor.start(child))
            edge_model_ids.append(model.name)
            if edge.link is None:
                edge_urls.append(child.url)
                continue
            # Its readiness probe crosses the link to the edge's /ready, so "ready" means the
            # edge is ready and reachable the way the gateway will reach it.
            link = link_child(
                f"link-{i + 1}", edge.link, spec.host, spec.link_base_port + i, port, seed=i
            )
            started.append(supervisor.start(link))
            edge_urls.append(link.url)
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
                env=gateway_env(spec, edge_token, cloud_api_key),
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
        edge_models=edge_model_ids,
        cloud_api_key=cloud_api_key,
        edge_api_key=edge_token,
    )


def link_child(
    name: str, link: LinkProfile, host: str, port: int, upstream_port: int, *, seed: int = 0
) -> ChildSpec:
    """A link proxy (``pice_stack.link``) on ``port`` in front of ``upstream_port``.

    Unpinned, like the gateway: it moves bytes and sleeps, and pinning it to an edge's core
    would slow the edge it fronts.
    """
    argv = [
        *(sys.executable, "-m", "pice_stack.link"),
        *("--listen", f"{host}:{port}", "--upstream", f"{host}:{upstream_port}"),
        *("--delay-ms", f"{link.delay_ms:g}", "--jitter-ms", f"{link.jitter_ms:g}"),
        *("--seed", str(seed)),
    ]
    if link.rate_mbit is not None:
        argv += ["--rate-mbit", f"{link.rate_mbit:g}"]
    return ChildSpec(name=name, argv=tuple(argv), port=port, host=host)


def cloud_lora_args(spec: StackSpec) -> tuple[str, ...]:
    """The cloud server's arguments serving ``spec.sketch_lora`` (none without one); raises
    :class:`~pice_stack.sketch_lora.SketchLoraError` for a path of the wrong kind."""
    if spec.sketch_lora is None:
        return ()
    if spec.cloud == "vllm":
        return vllm_lora_args(spec.sketch_lora)
    return edge_lora_args(spec.sketch_lora)


def edges_lora_args(spec: StackSpec) -> tuple[str, ...]:
    """Every edge's arguments applying ``spec.edge_lora`` (none without one); raises
    :class:`~pice_stack.lora.EdgeLoraError` for a path of the wrong kind or a bad scale."""
    if spec.edge_lora is None:
        if spec.edge_lora_scale is not None:
            raise EdgeLoraError("--edge-lora-scale needs --edge-lora (the adapter it scales)")
        if spec.edge_lora_merge:
            raise EdgeLoraError("--edge-lora-merge needs --edge-lora (the adapter it folds in)")
        return ()
    merge = ("--lora-merge",) if spec.edge_lora_merge else ()
    return (*edge_adapter_args(spec.edge_lora, spec.edge_lora_scale), *merge)


def embedded_cloud_argv(
    spec: StackSpec, model_path: Path, model_name: str, extra_args: Sequence[str] = ()
) -> tuple[str, ...]:
    """The embedded cloud's command: an edge agent serving the cloud model (and, through
    ``extra_args``, a sketcher adapter) on ``spec.cloud_port``."""
    return pice_argv(
        *("edge", "serve", "--model", str(model_path), "--model-id", model_name),
        *("--host", spec.host, "--port", str(spec.cloud_port), "--threads", str(spec.threads)),
        *extra_args,
    )


def _cloud_child(
    spec: StackSpec, core: str | None, env: Mapping[str, str], extra_args: Sequence[str] = ()
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
        server = replace(server, extra_args=(*server.extra_args, *extra_args))
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
    argv = embedded_cloud_argv(spec, model.path, model.name, extra_args)
    child = ChildSpec(
        name="cloud",
        argv=tuple(taskset_argv(argv, core)),
        port=spec.cloud_port,
        host=spec.host,
        env=env,
    )
    return child, model.name, f"{child.url}/v1"
