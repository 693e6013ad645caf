"""Unknown settings names are found, with the nearest real one, and real names are not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_agent.settings import EdgeSettings
from pice.settings_check import settings_warnings, unknown_env_variables, unknown_keys
from pice_gateway.settings import GatewaySettings


def test_a_misplaced_nested_variable_is_named_with_the_setting_it_meant() -> None:
    env = {"PICE_HEDGING__ENABLED": "true"}
    [warning] = unknown_env_variables(GatewaySettings, env, "PICE_")
    assert warning.startswith("PICE_HEDGING__ENABLED names no setting")
    assert "PICE_PROGRESSIVE__HEDGING__ENABLED" in warning


def test_real_settings_and_other_programs_variables_pass() -> None:
    env = {
        "PICE_PROGRESSIVE__HEDGING__ENABLED": "true",
        "pice_cloud__model": "m",  # pydantic-settings matches names case-insensitively
        "PICE_EDGE_CLIENT__TOKEN": "t",
        "PICE_MODEL_CACHE": "/cache",  # no delimiter: scripts' and other processes' names
        "PICE_EDGE_LOG_FORMAT": "json",
        "PATH": "/bin",
    }
    assert unknown_env_variables(GatewaySettings, env, "PICE_") == []


def test_a_typo_below_a_real_group_is_caught() -> None:
    env = {"PICE_PROGRESSIVE__HEDGNG__ENABLED": "true", "PICE_CLOUD__MODEL__NAME": "x"}
    warnings = unknown_env_variables(GatewaySettings, env, "PICE_")
    assert [w.split()[0] for w in warnings] == [
        "PICE_CLOUD__MODEL__NAME",
        "PICE_PROGRESSIVE__HEDGNG__ENABLED",
    ]
    assert "PICE_PROGRESSIVE__HEDGING__ENABLED" in warnings[1]


def test_the_edge_checks_its_own_prefix() -> None:
    env = {"PICE_EDGE_TRACING__ENABLD": "1", "PICE_EDGE_TRACING__ENABLED": "1"}
    [warning] = unknown_env_variables(EdgeSettings, env, "PICE_EDGE_")
    assert "PICE_EDGE_TRACING__ENABLED?" in warning


def test_yaml_keys_are_checked_recursively() -> None:
    data = {"cloud": {"model": "m", "modle": "x"}, "progresive": {}, "edges": []}
    warnings = unknown_keys(GatewaySettings, data)
    assert warnings == [
        "cloud.modle names no setting and is ignored; did you mean cloud.model?",
        "progresive names no setting and is ignored; did you mean progressive?",
    ]


def test_start_up_warnings_cover_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "pice.yaml"
    config.write_text("cloud:\n  base_url: http://c/v1\nrouter:\n  threshhold: 0.4\n")
    warnings = settings_warnings(GatewaySettings, config, {"PICE_ROUTER__THRESHHOLD": "0.4"})
    assert len(warnings) == 2
    assert warnings[0].startswith("PICE_ROUTER__THRESHHOLD")
    assert warnings[1].startswith(f"{config}: router.threshhold")
    assert settings_warnings(GatewaySettings, None, {}) == []


ROOT = Path(__file__).resolve().parents[2]
DELIMITED = re.compile(r"\bPICE_[A-Z0-9_]*?__[A-Z0-9_]*[A-Z0-9]")
# Named in docs/benchmarks.md as the mistyped variable that left hedging off in one run.
CITED_AS_WRONG = {"PICE_HEDGING__ENABLED"}


@pytest.mark.parametrize("name", ["embedded.yaml", "vllm-orins.yaml", "compose.yaml"])
def test_shipped_gateway_configs_name_only_settings(name: str) -> None:
    config = ROOT / "configs" / name
    assert settings_warnings(GatewaySettings, config, {}) == []


def test_every_documented_nested_variable_names_a_setting() -> None:
    """The README, docs, Docker and Kubernetes files name variables a user will copy."""
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "docker").rglob("*")]
    names = {m.group(0) for f in files if f.is_file() for m in DELIMITED.finditer(f.read_text())}
    assert len(names) > 10  # the pattern still finds them
    env = dict.fromkeys(names, "x")
    gateway = unknown_env_variables(GatewaySettings, env, "PICE_")
    edge = unknown_env_variables(EdgeSettings, env, "PICE_EDGE_")
    # A name is wrong when neither the gateway nor the edge knows it.
    wrong = {w.split()[0] for w in gateway} & (
        {w.split()[0] for w in edge} | {n for n in names if not n.startswith("PICE_EDGE_")}
    )
    assert sorted(wrong) == sorted(CITED_AS_WRONG)
