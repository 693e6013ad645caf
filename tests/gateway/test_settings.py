"""Settings precedence: defaults < YAML < PICE_* environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pice_gateway.settings import GatewaySettings, load_settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_match_the_documented_schema() -> None:
    settings = GatewaySettings()
    assert (settings.host, settings.port, settings.api_keys) == ("127.0.0.1", 8000, [])
    assert settings.allow_insecure is False
    assert settings.rate_limit.requests_per_minute is None
    assert settings.cors.allow_origins == []
    assert settings.cloud.base_url == "http://127.0.0.1:8100/v1"
    assert settings.cloud.timeouts.read == 120
    assert [edge.name for edge in settings.edges] == ["edge-1"]
    assert settings.models.auto == "pice"


# vllm-orins.yaml reads its secrets from files: test_shipped_configs.py loads it with them.
@pytest.mark.parametrize("name", ["embedded.yaml", "compose.yaml"])
def test_shipped_configs_load(name: str) -> None:
    settings = load_settings(CONFIGS / name)
    # compose.yaml's edges register themselves (docker/compose.yaml); embedded.yaml lists its own.
    assert bool(settings.edges) == (name == "embedded.yaml")
    assert settings.cloud.base_url.endswith("/v1")


def test_environment_overrides_yaml_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICE_CLOUD__MODEL", "from-env")
    monkeypatch.setenv("PICE_PORT", "8500")
    monkeypatch.setenv("PICE_API_KEYS", '["k1"]')
    settings = load_settings(CONFIGS / "embedded.yaml", port=9000)
    assert settings.cloud.model == "from-env"
    assert settings.cloud.base_url == "http://127.0.0.1:8100/v1"  # from the YAML
    assert settings.port == 9000
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1"]
    assert [edge.name for edge in settings.edges] == ["edge-1", "edge-2"]


def test_duplicate_edge_names_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("edges:\n  - {name: a, url: 'http://x'}\n  - {name: a, url: 'http://y'}\n")
    with pytest.raises(ValueError, match="unique"):
        load_settings(config)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.yaml")


def test_placement_policy_is_chosen_by_a_registered_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().progressive.placement == "eft"
    monkeypatch.setenv("PICE_PROGRESSIVE__PLACEMENT", "fastest")
    with pytest.raises(ValueError, match="unknown placement policy 'fastest'; registered: eft, "):
        load_settings()
    for name in ("least-loaded", "eft", "round-robin"):
        monkeypatch.setenv("PICE_PROGRESSIVE__PLACEMENT", name)
        assert load_settings().progressive.placement == name


def test_idle_upstream_connections_expire_before_the_servers_close_them() -> None:
    # vLLM and the edge agent serve with uvicorn: an idle connection the gateway would reuse
    # just as uvicorn closes it fails the request with a ReadError.
    import uvicorn

    from pice_gateway.settings import pool_limits

    server_keep_alive = uvicorn.Config(app="x:y").timeout_keep_alive
    assert pool_limits(8).keepalive_seconds < server_keep_alive
