"""Edge settings: defaults < YAML < environment < CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.settings import EdgeSettings, available_cpus, load_settings


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
