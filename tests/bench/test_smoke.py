"""``pice bench --quick`` end to end on a tiny real stack (0.5B as cloud and edge)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import pice_argv

pytestmark = [pytest.mark.model, pytest.mark.slow]

MODES = ["cloud-only", "sot-cloud", "pice-progressive", "pice-auto", "fleet-direct"]


def test_quick_bench_sets_up_measures_and_tears_down(
    small_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    argv = pice_argv(
        "bench", "--quick", "--out", str(out),
        "--cloud-model", str(small_model_path), "--edge-model", str(small_model_path),
        "--limit", "2", "--max-tokens", "64",
        "--rates", "0.5", "--load-requests", "1", "--load-seconds", "1", "--slo-seconds", "120",
    )  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=540, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads((out / "results.json").read_text())
    latency = [r for r in data["requests"] if r["phase"] == "latency"]
    assert sorted({r["mode"] for r in latency}) == sorted(MODES)
    assert len(latency) == 2 * len(MODES)
    for record in latency:
        answer = record["answer"]
        assert answer["error"] is None, record
        assert answer["text"].strip(), record
        assert 0 < answer["ttft_s"] <= answer["latency_s"]
    by_mode = {r["mode"]: r["answer"] for r in latency if r["suits_points"]}
    # The cloud writes everything in cloud-only and SoT; PICE hands the points to the edge.
    assert by_mode["cloud-only"]["tokens"]["edge_completion"] == 0
    assert by_mode["sot-cloud"]["tokens"]["edge_completion"] == 0
    assert by_mode["sot-cloud"]["points"]
    pice = by_mode["pice-progressive"]
    assert pice["extension"]["mode"] == "progressive"
    assert pice["points"]
    assert pice["tokens"]["edge_completion"] > 0
    assert pice["tokens"]["cloud_completion"] > 0

    assert data["judgments"], "every PICE answer is judged against cloud-only"
    for judgment in data["judgments"]:
        assert judgment["outcome"] in {"win", "loss", "tie"}
    assert {s["mode"] for s in data["load_steps"]} == set(MODES)
    # The record says what the started gateway ran with (its defaults here) and what it hedged.
    settings = data["config"]["gateway_settings"]
    assert settings["progressive"]["hedging"]["enabled"] is False
    assert settings["router"]["enabled"] is True
    assert all(step["hedges"] == step["hedges_won"] == 0 for step in data["load_steps"])

    md = (out / "results.md").read_text()
    assert "| pice-progressive |" in md
    assert "## Targets" in md
    for name in ("latency_vs_rate.png", "throughput.png", "latency_by_category.png"):
        assert (out / name).stat().st_size > 0
    # The testbed is gone: nothing answers where its servers were.
    for url in (data["config"]["gateway_url"], data["config"]["cloud_url"]):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/models", timeout=2.0)
