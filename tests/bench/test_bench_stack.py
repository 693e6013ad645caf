"""What ``pice bench`` asks the stack launcher for, and the endpoints it builds from the answer
(the launcher itself is stubbed: it would start real models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import pice_stack.stack as stack_module
from pice_bench.stack import BenchStackSpec, bench_stack
from pice_stack.profile import load_profile
from pice_stack.stack import StackSpec, gateway_config


class FakeRunning:
    def __init__(self, spec: StackSpec) -> None:
        self.spec = spec
        self.gateway_url = "http://127.0.0.1:1"
        self.cloud_base_url = "http://127.0.0.1:2/v1"
        self.cloud_model = "big"
        self.edge_urls = ["http://127.0.0.1:3", "http://127.0.0.1:9"]  # edge-2 via its link
        self.edge_models = ["small", "small"]
        self.cloud_api_key = "cloud-key"
        self.edge_api_key = "edge-key"
        # The gateway's file, as the real launcher writes it.
        assert spec.run_dir is not None
        self.config_path = spec.run_dir / "gateway.yaml"
        config = gateway_config(spec, self.cloud_base_url, self.cloud_model, self.edge_urls)
        self.config_path.write_text(yaml.safe_dump(config))

    def __enter__(self) -> FakeRunning:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[StackSpec]:
    """Every spec the (stubbed) launcher was asked to run."""
    specs: list[StackSpec] = []

    def fake_launch(spec: StackSpec) -> Any:
        specs.append(spec)
        return FakeRunning(spec)

    monkeypatch.setattr(stack_module, "launch_stack", fake_launch)
    return specs


def test_a_profile_and_a_placement_reach_the_launcher_and_fleet_direct_gets_every_server(
    tmp_path: Path, launched: list[StackSpec]
) -> None:
    spec = BenchStackSpec(
        cloud="edge", cloud_model="big", edge_model="small", edges=1, threads=1, pin=True,
        log_dir=tmp_path, profile=load_profile("heterogeneous"), placement="eft",
    )  # fmt: skip
    with bench_stack(spec) as bench:
        endpoints = bench.endpoints
    (sent,) = launched
    assert sent.profile is not None
    assert len(sent.edge_profiles()) == 2  # the profile's edges, not edges=1
    assert sent.gateway_overrides == {"progressive": {"placement": "eft"}}
    assert endpoints.gateway_url == "http://127.0.0.1:1/v1"
    assert [(b.name, b.base_url, b.model, b.is_cloud, b.api_key) for b in endpoints.fleet] == [
        ("cloud", "http://127.0.0.1:2/v1", "big", True, "cloud-key"),
        ("edge-1", "http://127.0.0.1:3/v1", "small", False, "edge-key"),
        ("edge-2", "http://127.0.0.1:9/v1", "small", False, "edge-key"),
    ]
    assert bench.cores["placement"] == "eft"
    assert bench.cores["profile"]["name"] == "heterogeneous"
    assert len(bench.cores["edges"]) == 2
    # The record of the gateway's settings is read from the file the launcher wrote.
    assert bench.gateway["progressive"]["placement"] == "eft"
    assert bench.gateway["progressive"]["hedging"]["enabled"] is False


def test_a_placement_rate_reaches_the_gateways_settings_and_the_record(
    tmp_path: Path, launched: list[StackSpec]
) -> None:
    spec = BenchStackSpec(
        cloud="edge", cloud_model="big", edge_model="small", edges=1, threads=1, pin=True,
        log_dir=tmp_path, placement="eft", placement_rate="decode",
    )  # fmt: skip
    with bench_stack(spec) as bench:
        pass
    progressive = {"placement": "eft", "placement_rate": "decode"}
    assert launched[0].gateway_overrides == {"progressive": progressive}
    assert bench.gateway["progressive"]["placement_rate"] == "decode"


def test_a_sketch_lora_reaches_the_launcher_and_the_record(
    tmp_path: Path, launched: list[StackSpec]
) -> None:
    adapter = tmp_path / "adapter"
    spec = BenchStackSpec(
        cloud="vllm", cloud_model="big", edge_model="small", edges=1, threads=1, pin=True,
        log_dir=tmp_path, sketch_lora=adapter,
    )  # fmt: skip
    with bench_stack(spec) as bench:
        pass
    assert launched[0].sketch_lora == adapter
    assert bench.cores["sketch_lora"] == str(adapter)
    # The cloud-only mode asks the base model: the adapter is for the sketches only.
    assert bench.endpoints.cloud_model == "big"


def test_an_edge_lora_reaches_the_launcher_and_the_record(
    tmp_path: Path, launched: list[StackSpec]
) -> None:
    adapter = tmp_path / "tuned.gguf"
    spec = BenchStackSpec(
        cloud="edge", cloud_model="big", edge_model="small", edges=1, threads=1, pin=True,
        log_dir=tmp_path, edge_lora=adapter, edge_lora_scale=0.5, edge_lora_merge=True,
    )  # fmt: skip
    with bench_stack(spec) as bench:
        pass
    assert (launched[0].edge_lora, launched[0].edge_lora_scale) == (adapter, 0.5)
    assert launched[0].edge_lora_merge is True
    assert launched[0].sketch_lora is None
    assert (bench.cores["edge_lora"], bench.cores["edge_lora_scale"]) == (str(adapter), 0.5)
    assert bench.cores["edge_lora_merge"] is True
