"""A whole run against fake upstreams: the evidence pieces end to end, in a second.

The cloud and the gateway are one scripted ``httpx.MockTransport``; the judge is the cloud (as
in a default run), so every judge call, calibration included, lands there too.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice_bench import runner
from pice_bench.modes import Endpoints
from pice_bench.questions import Question
from pice_bench.records import Mode
from pice_bench.runner import JudgeSpec, LoadSpec, RunSpec, run_bench, write_outputs
from tests.bench.test_client_modes import content, event_stream, sse, usage

QUESTIONS = [
    Question(f"q{i}", "generic", f"How do I sleep better, take {i}?", True) for i in range(4)
]
PICE_TEXT = (
    "1. **Fixed schedule**: Go to bed at ten every night, even on weekends.\n"
    "2. **Dark room**: Keep it dark.\n"
)
PICE_REPORT = {
    "mode": "progressive",
    "reason": "outline",
    "points": [{"title": "Fixed schedule", "finish_reason": "stop"},
               {"title": "Dark room", "finish_reason": "length"}],
    "cloud_usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18},
    "edge_usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
}  # fmt: skip


def is_cloud_only(body: dict[str, Any]) -> bool:
    """Cloud-only sends the question alone, as its one message."""
    return [m["content"] for m in body["messages"]] in [[q.question] for q in QUESTIONS]


def upstream(body: dict[str, Any], seen: list[dict[str, Any]]) -> httpx.Response:
    seen.append(body)
    messages = body["messages"]
    if not body.get("stream"):  # a judge call
        reply = {"choices": [{"message": {"content": "Score A: 7\nScore B: 6"}}]}
        return httpx.Response(200, json=reply)
    if body["model"] == "pice-progressive":
        chunks = [content(PICE_TEXT), {"choices": [], "pice": PICE_REPORT}]
        return event_stream(sse(chunks))
    if is_cloud_only(body):  # every other answer is cut
        cut = messages[0]["content"].endswith("0?")
        return event_stream(sse([content("Sleep at fixed times in a dark, quiet room.",
                                         "length" if cut else "stop"), usage(9, 12)]))  # fmt: skip
    if "Outline of the answer" not in messages[-1]["content"]:  # the SoT sketch
        return event_stream(sse([content("1. Fixed schedule\n2. Dark room\n"), usage(80, 9)]))
    return event_stream(sse([content("Go to bed at the same hour each night."), usage(90, 8)]))


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every request body the bench sends, answered by :func:`upstream`."""
    bodies: list[dict[str, Any]] = []

    def fake_client(_timeout: float) -> httpx.AsyncClient:
        transport = httpx.MockTransport(lambda r: upstream(json.loads(r.content), bodies))
        return httpx.AsyncClient(transport=transport)

    monkeypatch.setattr(runner, "_client", fake_client)
    return bodies


def test_a_fake_run_records_every_piece_of_evidence(
    tmp_path: Path, seen: list[dict[str, Any]]
) -> None:
    spec = RunSpec(
        questions=QUESTIONS,
        modes=[Mode.CLOUD, Mode.SOT, Mode.PICE],
        endpoints=Endpoints("http://gw/v1", "http://cloud/v1", "m"),
        max_tokens=768,
        slo_seconds=60.0,
        out_dir=tmp_path,
        judge=JudgeSpec("http://cloud/v1", "m", calibrate=True),
        seed=7,
        config={"judge_model": "m", "judge_is_cloud": True},
    )
    results = asyncio.run(run_bench(spec))
    write_outputs(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())

    orders = data["mode_orders"]
    assert set(orders) == {q.id for q in QUESTIONS}
    assert len({tuple(o) for o in orders.values()}) > 1  # shuffled, not one fixed order
    assert data["config"]["seed"] == 7
    latency = {r["mode"]: r for r in data["summary"]["latency_all"]}
    assert latency["cloud-only"]["cut_off"] == 1  # q0's answer ended on length
    assert latency["pice-progressive"]["cut_off_share"] == 1.0  # a point ended on length
    assert latency["sot-cloud"]["cut_off"] == 0
    suitable = data["summary"]["win_rates"]["pice-progressive"]["suitable"]
    assert suitable["n"] == 4
    assert len(suitable["net_ci95"]) == 2
    assert "pice-progressive" in data["summary"]["latency_ratio_p50"]["suitable"]
    pice_cov = next(c for c in data["summary"]["coverage"] if c["mode"] == "pice-progressive")
    assert pice_cov["points_share"] == 0.5  # "Keep it dark." restates "Dark room"
    assert data["judge_calibration"]["known_better"] == 10
    assert data["judge_diagnostics"]["pice-progressive"]["position_following"] == 1.0
    assert all(j["candidate_cut"] for j in data["judgments"])
    assert {b["max_tokens"] for b in seen if b.get("stream") and is_cloud_only(b)} == {768}
    sot_cov = next(c for c in data["summary"]["coverage"] if c["mode"] == "sot-cloud")
    # The fake cloud writes one body for every point: each second point repeats the first.
    assert (sot_cov["points"], sot_cov["points_covered"]) == (8, 4)
    assert {f["why"] for f in sot_cov["failures"]} == {"duplicate"}

    md = (tmp_path / "results.md").read_text()
    for heading in ("cut off", "95% CI", "## Judge", "points expanded", "Points not expanded"):
        assert heading in md


def test_a_load_only_run_sends_the_schedule_and_nothing_else(
    tmp_path: Path, seen: list[dict[str, Any]]
) -> None:
    spec = RunSpec(
        questions=QUESTIONS, modes=[Mode.PICE], endpoints=Endpoints("http://gw/v1", None, "m"),
        max_tokens=768, slo_seconds=60.0, out_dir=tmp_path,
        judge=JudgeSpec("http://cloud/v1", "m"),  # asked for, but there is nothing to judge
        load=LoadSpec(rates=(50.0,), max_count=6, max_duration=math.inf), latency=False,
    )  # fmt: skip
    results = asyncio.run(run_bench(spec))
    write_outputs(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())

    assert len(seen) == 6, "the six scheduled arrivals, no latency pass, no judge call"
    assert all(b.get("stream") for b in seen)
    assert {r["phase"] for r in data["requests"]} == {"load"}
    assert [s["completed"] for s in data["load_steps"]] == [6]
    assert data["judgments"] == []
    assert data["config"]["latency_pass"] is False
    md = (tmp_path / "results.md").read_text()
    assert "No one-at-a-time latency pass" in md
    assert "## Latency" not in md
    assert "| pice-progressive | 50.000 | 6 | 6 | 0 |" in md
