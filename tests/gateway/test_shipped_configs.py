"""Every shipped configuration loads with the settings classes, with keys and edge tokens set
through secret references (files, environment from env files or a Kubernetes Secret), and no
secret value written in any file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.settings import EdgeSettings
from pice_gateway.app import create_app
from pice_gateway.settings import GatewaySettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DOCKER = ROOT / "docker"
# Settings that hold a secret value; a shipped file may only leave them unset (or empty).
SECRET_FIELDS = {"api_keys", "api_key", "token", "api_token"}
# Compose's "required" interpolation: ${NAME:?message}.
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}$")
# Environment variables that carry a secret: never a literal value in a shipped file.
SECRET_VAR = re.compile(r"KEY|TOKEN|SECRET|PASSWORD")


def literal_secrets(node: Any, path: str = "") -> list[str]:
    """Where ``node`` (parsed YAML) writes a value into a secret field."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key in SECRET_FIELDS and value not in (None, [], ""):
                found.append(where)
            found += literal_secrets(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += literal_secrets(item, f"{path}[{i}]")
    return found


def assert_fully_keyed(settings: GatewaySettings) -> None:
    assert settings.api_keys, "no client keys"
    assert all(edge.token is not None for edge in settings.edges), "an edge without a token"
    # Off loopback, keys are what lets it start.
    create_app(settings)


def test_embedded_config_takes_its_edge_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = CONFIGS / "embedded.yaml"
    assert literal_secrets(yaml.safe_load(path.read_text())) == []
    # What `pice up` sets for the gateway (pice_stack.stack.gateway_env).
    monkeypatch.setenv("PICE_EDGE_CLIENT__TOKEN", "per-run-token")
    settings = load_settings(path)
    assert settings.host == "127.0.0.1"
    assert [e.token.get_secret_value() for e in settings.edges if e.token] == ["per-run-token"] * 2


def test_vllm_orins_config_reads_every_secret_from_a_file(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONFIGS / "vllm-orins.yaml").read_text())
    assert literal_secrets(raw) == []
    assert raw["host"] == "0.0.0.0"
    refs = [raw["api_keys_file"], raw["cloud"]["api_key_file"]]
    refs += [edge["token_file"] for edge in raw["edges"]]
    assert all(Path(ref).is_absolute() for ref in refs)

    # The same file with each secret file moved under tmp_path.
    def moved(ref: str) -> str:
        target = tmp_path / ref.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"secret-of-{target.name}\n")
        return str(target)

    raw["api_keys_file"] = moved(raw["api_keys_file"])
    raw["cloud"]["api_key_file"] = moved(raw["cloud"]["api_key_file"])
    for edge in raw["edges"]:
        edge["token_file"] = moved(edge["token_file"])
    config = tmp_path / "vllm-orins.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    assert_fully_keyed(settings)
    assert settings.cloud.api_key is not None
    tokens = {e.name: e.token.get_secret_value() for e in settings.edges if e.token}
    assert tokens == {name: f"secret-of-{name}" for name in ("orin-1", "orin-2", "orin-3")}


def env_example() -> dict[str, str]:
    lines = (DOCKER / "pice.env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_the_env_example_holds_no_key() -> None:
    example = env_example()
    assert set(example) == {"PICE_API_KEYS", "PICE_CLOUD_API_KEY", "PICE_EDGE_TOKEN"}
    assert all(value == "" for value in example.values())
    assert "/docker/pice.env" in (ROOT / ".gitignore").read_text().splitlines()


def compose_environment(service: dict[str, Any], filled: dict[str, str]) -> dict[str, str]:
    """A service's secret variables, each required ``${VAR:?...}`` filled from ``filled``."""
    env: dict[str, str] = {}
    for name, value in service.get("environment", {}).items():
        match = REQUIRED_VAR.match(value)
        if not SECRET_VAR.search(name):
            assert "${" not in value, f"{name}: only secrets come from the env file"
            continue
        assert match, f"{name} must be a required interpolation, not a literal"
        env[name] = filled[match["name"]]
    return env


def test_compose_passes_every_secret_from_the_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    filled = {name: f"value-of-{name}" for name in env_example()}
    filled["PICE_API_KEYS"] = '["client-key"]'
    # Only the gateway publishes a port.
    assert [name for name, s in services.items() if "ports" in s] == ["gateway"]

    assert compose_environment(services["cloud"], filled) == {
        "VLLM_API_KEY": filled["PICE_CLOUD_API_KEY"]
    }
    for name in ("edge-1", "edge-2"):
        edge_env = compose_environment(services[name], filled)
        assert edge_env == {"PICE_EDGE_API_TOKEN": filled["PICE_EDGE_TOKEN"]}
        # Each edge registers itself with the gateway at its own service name.
        assert services[name]["environment"]["PICE_EDGE_JOIN_URL"] == "http://gateway:8000"
        assert services[name]["environment"]["PICE_EDGE_ADVERTISE_URL"] == f"http://{name}:8101"

    gateway_env = compose_environment(services["gateway"], filled)
    raw = yaml.safe_load((CONFIGS / "compose.yaml").read_text())
    assert literal_secrets(raw) == []
    for name, value in gateway_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(CONFIGS / "compose.yaml")
    assert_fully_keyed(settings)
    assert settings.edges == [], "edges register themselves; static ones would not resolve"
    # The gateway sends the edges the token they require, and the cloud vLLM's key.
    assert settings.edge_client.token is not None
    assert settings.edge_client.token.get_secret_value() == filled["PICE_EDGE_TOKEN"]
    assert settings.cloud.api_key is not None
    assert settings.cloud.api_key.get_secret_value() == filled["PICE_CLOUD_API_KEY"]


def k8s_documents(name: str = "pice.yaml") -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DOCKER / "k8s" / name).read_text())
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def secret_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's variables that come from the ``pice-secrets`` Secret: name -> key.

    Every variable named like a secret must come from it; the others (URLs, the node's IP)
    may be literals or other references."""
    out = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            assert not SECRET_VAR.search(var["name"]), f"{var['name']} is not from the Secret"
            continue
        assert "value" not in var, f"{var['name']} is a literal"
        assert ref["name"] == "pice-secrets"
        out[var["name"]] = ref["key"]
    return out


def test_kubernetes_reads_every_secret_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = k8s_documents()
    assert not any(kind.startswith("Secret/") for kind in docs), "re-applying would reset keys"
    example = yaml.safe_load((DOCKER / "k8s" / "secret.example.yaml").read_text())
    assert example["kind"] == "Secret"
    assert example["metadata"]["name"] == "pice-secrets"
    assert all(value == "" for value in example["stringData"].values())
    values = {
        "api-keys": '["client-key"]',
        "edge-token": "edge-secret",
        "cloud-api-key": "cloud-secret",
    }
    assert set(example["stringData"]) == set(values)

    (gateway,) = docs["Deployment/pice-gateway"]["spec"]["template"]["spec"]["containers"]
    (edge,) = docs["DaemonSet/pice-edge"]["spec"]["template"]["spec"]["containers"]
    assert secret_env(edge) == {"PICE_EDGE_API_TOKEN": "edge-token"}
    vllm_docs = k8s_documents("vllm.yaml")
    assert not any(kind.startswith("Secret/") for kind in vllm_docs)
    (vllm,) = vllm_docs["Deployment/vllm"]["spec"]["template"]["spec"]["containers"]
    assert secret_env(vllm) == {"VLLM_API_KEY": "cloud-api-key"}
    edge_settings = EdgeSettings(host="0.0.0.0", api_token=values["edge-token"])
    assert edge_settings.api_token is not None

    gateway_vars = secret_env(gateway)
    for name, key in gateway_vars.items():
        monkeypatch.setenv(name, values[key])
    config_text = docs["ConfigMap/pice-gateway"]["data"]["gateway.yaml"]
    assert literal_secrets(yaml.safe_load(config_text)) == []
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text)
    settings = load_settings(config)
    assert_fully_keyed(settings)
    assert settings.edges == [], "edges register themselves; static ones would not resolve"
    assert settings.edge_client.token is not None
    assert settings.edge_client.token.get_secret_value() == "edge-secret"


@pytest.mark.parametrize("name", ["Dockerfile.gateway", "Dockerfile.edge", "Dockerfile.edge-l4t"])
def test_dockerfiles_bake_no_secret(name: str) -> None:
    text = (DOCKER / name).read_text()
    env_lines = [line for line in text.splitlines() if line.startswith(("ENV", "ARG"))]
    assert not [line for line in env_lines if re.search(r"KEY|TOKEN|SECRET", line)]
