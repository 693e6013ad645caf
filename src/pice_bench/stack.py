"""The testbed on this machine, set up and torn down by the project's stack launcher.

``pice bench`` reuses :func:`pice_stack.stack.launch_stack` (the code behind ``pice up``): the
cloud pinned to the first core, the edge agents to the others, one thread per model server,
the gateway unpinned. Only the ports differ from ``pice up``: free ones are picked so a bench
can run beside a ``pice up`` on its default ports.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pice_bench.fleet import fleet_backends
from pice_bench.modes import Endpoints

if TYPE_CHECKING:
    from pice_stack.profile import TestbedProfile

CloudKind = Literal["edge", "vllm"]


@dataclass(frozen=True)
class BenchStackSpec:
    cloud: CloudKind
    cloud_model: str
    edge_model: str
    edges: int
    threads: int
    pin: bool
    log_dir: Path
    vllm_venv: Path | None = None
    # Edges from a testbed profile (their count replaces ``edges``).
    profile: TestbedProfile | None = None
    # The gateway's placement policy (``progressive.placement``); None = its default.
    placement: str | None = None
    # The rate curve its estimates use (``progressive.placement_rate``); None = its default.
    placement_rate: str | None = None
    # A sketcher LoRA the cloud serves for the outline sketches (``pice up --sketch-lora``).
    sketch_lora: Path | None = None
    # A LoRA adapter GGUF every edge applies (``pice up --edge-lora``), and its scale.
    edge_lora: Path | None = None
    edge_lora_scale: float | None = None
    edge_lora_merge: bool = False


@dataclass(frozen=True)
class BenchStack:
    endpoints: Endpoints
    # Which core each server was pinned to ("unpinned" when not): the resource accounting.
    cores: dict[str, Any]
    # The gateway's settings that shape its answers and latencies (:func:`gateway_record`).
    gateway: dict[str, Any]


# The sections of the gateway's settings a run's figures depend on (no secrets among them).
RECORDED_SECTIONS = ("progressive", "router", "admission", "load_decision")


def gateway_record(config: Path | None) -> dict[str, Any]:
    """The gateway's effective settings in ``RECORDED_SECTIONS``, read as the gateway reads them:
    its YAML file and the ``PICE_*`` environment it inherits from this process (the launcher
    adds only secrets). A run's record then says what was on — hedging, overflow, the frame —
    instead of a reader inferring it from the defaults of the day."""
    from pice_gateway.settings import load_settings

    settings = load_settings(config).model_dump(mode="json", include=set(RECORDED_SECTIONS))
    return {section: settings[section] for section in RECORDED_SECTIONS}


def _free_port_run(host: str, count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive free ports (the launcher puts edges on a range)."""
    from pice_stack.supervisor import port_is_free

    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            first = int(sock.getsockname()[1])
        if first + count < 65536 and all(port_is_free(host, first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no run of {count} free ports on {host}")


@contextlib.contextmanager
def bench_stack(spec: BenchStackSpec) -> Iterator[BenchStack]:
    """Start cloud, edges and gateway; stop all of them when the block exits, however."""
    from pice_stack.stack import StackSpec, launch_stack, plan_cores

    host = "127.0.0.1"
    edges = len(spec.profile.edges) if spec.profile is not None else spec.edges
    overrides: dict[str, Any] = {}
    progressive: dict[str, Any] = {}
    if spec.placement is not None:
        progressive["placement"] = spec.placement
    if spec.placement_rate is not None:
        progressive["placement_rate"] = spec.placement_rate
    if progressive:
        overrides["progressive"] = progressive
    stack_spec = StackSpec(
        cloud=spec.cloud,
        cloud_model=spec.cloud_model,
        edge_model=spec.edge_model,
        edges=edges,
        host=host,
        gateway_port=_free_port_run(host, 1),
        cloud_port=_free_port_run(host, 1),
        edge_base_port=_free_port_run(host, edges),
        link_base_port=_free_port_run(host, edges),
        threads=spec.threads,
        pin=spec.pin,
        run_dir=spec.log_dir,
        vllm_venv=spec.vllm_venv,
        gateway_overrides=overrides,
        profile=spec.profile,
        sketch_lora=spec.sketch_lora,
        edge_lora=spec.edge_lora,
        edge_lora_scale=spec.edge_lora_scale,
        edge_lora_merge=spec.edge_lora_merge,
    )
    plan = plan_cores(edges, pin=spec.pin)
    with launch_stack(stack_spec) as stack:
        assert stack.gateway_url is not None
        yield BenchStack(
            gateway=gateway_record(stack.config_path),
            endpoints=Endpoints(
                gateway_url=stack.gateway_url + "/v1",
                cloud_url=stack.cloud_base_url,
                cloud_model=stack.cloud_model,
                cloud_api_key=stack.cloud_api_key,
                # fleet-direct reaches each edge as the gateway does, across its link.
                fleet=fleet_backends(
                    stack.cloud_base_url,
                    stack.cloud_model,
                    stack.edge_urls,
                    stack.edge_models,
                    cloud_api_key=stack.cloud_api_key,
                    edge_api_key=stack.edge_api_key,
                ),
            ),
            cores={
                "cloud": plan.cloud or "unpinned",
                "edges": [core or "unpinned" for core in plan.edges],
                "gateway": "unpinned",
                "threads_per_model_server": spec.threads,
                "profile": spec.profile.model_dump(mode="json") if spec.profile else None,
                "placement": spec.placement or "gateway default",
                "sketch_lora": str(spec.sketch_lora) if spec.sketch_lora else None,
                "edge_lora": str(spec.edge_lora) if spec.edge_lora else None,
                "edge_lora_scale": spec.edge_lora_scale,
                "edge_lora_merge": spec.edge_lora_merge,
            },
        )
