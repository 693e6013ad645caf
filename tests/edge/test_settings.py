"""Edge settings: defaults < YAML < environment < CLI flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.settings import EdgeSettings, available_cpus, host_edge_name, load_settings
from pice.edge_protocol import EDGE_NAME_PATTERN


def test_defaults() -> None:
    s = EdgeSettings()
    assert s.n_ctx == 4096
    assert s.max_sequences == 16
    assert s.n_batch == 512
    assert s.max_body_bytes == 1_048_576
    assert s.threads == available_cpus()
    assert s.api_token is None


def test_extra_buffers_and_amx_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert EdgeSettings().extra_buffers is True
    assert EdgeSettings().allow_amx is False
    monkeypatch.setenv("PICE_EDGE_EXTRA_BUFFERS", "false")
    monkeypatch.setenv("PICE_EDGE_ALLOW_AMX", "true")
    s = EdgeSettings()
    assert s.extra_buffers is False
    assert s.allow_amx is True


def test_yaml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("model: /models/a.gguf\nport: 9001\nthreads: 3\nn_ctx: 1024\n")
    monkeypatch.setenv("PICE_EDGE_PORT", "9002")
    s = load_settings(config, threads=1, model_id=None)
    assert s.model == "/models/a.gguf"  # from the file
    assert s.port == 9002  # the environment beats the file
    assert s.threads == 1  # a flag beats both
    assert s.n_ctx == 1024
    assert s.model_id is None  # an absent flag does not override


def test_batch_must_hold_every_sequence() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(max_sequences=64, n_batch=32)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.yaml")


def test_joining_and_dialling_edges_take_one_default_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host name, however the edge reaches its gateways: not its address, which is
    loopback (the same on every device) for a dialling edge and changes with a DHCP lease."""
    monkeypatch.setattr("edge_agent.settings.socket.gethostname", lambda: "orin-7")
    joining = EdgeSettings(
        join_url=["http://gw:8000"],
        api_token="t",
        host="0.0.0.0",
        advertise_url="http://10.0.0.7:8101",
    )
    dialling = EdgeSettings(dial_url=["https://gw.example"], api_token="t")
    both = EdgeSettings(
        join_url=["http://gw:8000"], dial_url=["https://gw.example"], api_token="t", port=9101
    )
    assert joining.edge_name() == dialling.edge_name() == both.edge_name() == "orin-7"
    monkeypatch.setattr("edge_agent.settings.socket.gethostname", lambda: "orin-8")
    assert dialling.edge_name() == "orin-8", "one name per device"
    named = EdgeSettings(join_url=["http://gw:8000"], api_token="t", name="lab-a")
    assert named.edge_name() == "lab-a"
    assert EdgeSettings(dial_url=["https://gw"], api_token="t", name="lab-a").edge_name() == "lab-a"


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("orin-7", "orin-7"),
        ("Orin_7.lab.example.com", "Orin_7.lab.example.com"),
        ("jetson orin", "jetson-orin"),
        ("jetson-\u00f6st", "jetson--st"),
        ("-odd", "edge--odd"),
        ("", "edge"),
        ("a" * 80, "a" * 63),
    ],
)
def test_a_host_name_becomes_a_valid_edge_name(hostname: str, name: str) -> None:
    assert host_edge_name(hostname) == name
    assert re.fullmatch(EDGE_NAME_PATTERN, name)
