"""The Grafana dashboard (``docker/grafana/pice-dashboard.json``) queries only metrics the
gateway exports, and every one of them: a renamed metric breaks this test, not the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "pice-dashboard.json"
METRIC = re.compile(r"\bpice_[a-z0-9_]+\b")
# The series a family of each type is scraped as (``_created`` is never worth a panel).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Family name -> the series names a scrape of a running gateway can hold."""
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return {
        family.name: {family.name + suffix for suffix in SUFFIXES[family.type]}
        for family in text_string_to_metric_families(text)
        # The parser reads an unlabelled metric's ``_created`` line as a gauge of its own.
        if not family.name.endswith("_created")
    }


def panels(container: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of the dashboard (or of a row)."""
    out: list[dict[str, Any]] = []
    for panel in container.get("panels", []):
        out.append(panel)
        out.extend(panels(panel))  # a collapsed row holds its panels
    return out


def test_the_dashboard_queries_exactly_the_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    assert exprs
    queried = {name for expr in exprs for name in METRIC.findall(expr)}
    families = exported()
    series = set().union(*families.values())
    assert queried <= series, f"not exported: {sorted(queried - series)}"
    unshown = {family for family, names in families.items() if not names & queried}
    assert not unshown, f"exported but on no panel: {sorted(unshown)}"


def test_every_panel_reads_the_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
