"""Cloud overflow on real models: ``pice up`` with one edge held to a fifth of a core behind a
slow link, and ``progressive.cloud_overflow`` on with its default margin and cap.

The first request's sketch measures the cloud (until then nothing may move). After it, the
cloud, a full core, expands a point in well under two thirds of the time the starved edge
needs once a few points queue on it, so points move to the cloud. The test reads that
in the ``pice`` object (``edge: "cloud"`` with the two estimates that decided it), checks that
at most ``max_points`` (2) of a request's points moved, and that every point of every answer
was written by someone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from pice_stack.cgroup import CPU_ROOT, writable
from tests.integration.test_up import _consecutive_free_ports, wait_until_up
from tests.support.processes import free_port, pice_argv

pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
    pytest.mark.skipif(not writable(), reason=f"cgroup v1 cpu not writable at {CPU_ROOT}"),
]

PROFILE = """\
name: starved-edge
description: one edge at a fifth of a core behind a 150 ms link
edges:
  - cpu_quota: 0.2
    link:
      delay_ms: 150
"""
QUESTIONS = [
    "Give me five tips for keeping a small kitchen tidy.",
    "What are five ways to save energy at home in winter?",
    "List five habits that help students revise for exams.",
    "Name five things to check before a long car journey.",
]
DEFAULT_MARGIN, DEFAULT_MAX_POINTS = 1.5, 2


def _ask(client: OpenAI, question: str) -> tuple[str, dict[str, Any]]:
    stream = client.chat.completions.create(
        model="pice-progressive",
        messages=[{"role": "user", "content": question}],
        max_tokens=200,
        stream=True,
        timeout=600,
    )
    text, report = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        report = (chunk.model_extra or {}).get("pice", report)
    assert report is not None
    return "".join(text), report


def test_overflow_moves_points_from_a_starved_edge_to_the_cloud(tmp_path: Path) -> None:
    profile = tmp_path / "starved.yaml"
    profile.write_text(PROFILE)
    gateway, cloud = free_port(), free_port()
    edge_base, link_base = _consecutive_free_ports(1), _consecutive_free_ports(1)
    log = tmp_path / "pice-up.out"
    argv = pice_argv(
        *("up", "--profile", str(profile)),
        *("--cloud-model", "qwen2.5-coder-0.5b-instruct"),
        *("--edge-model", "qwen2.5-coder-0.5b-instruct-q8_0"),
        *("--port", str(gateway), "--cloud-port", str(cloud)),
        *("--edge-base-port", str(edge_base), "--link-base-port", str(link_base)),
        *("--run-dir", str(tmp_path / "run")),
    )
    env = {**os.environ, "PICE_PROGRESSIVE__CLOUD_OVERFLOW__ENABLED": "true"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(proc, log)
        client = OpenAI(base_url=f"http://127.0.0.1:{gateway}/v1", api_key="x", max_retries=0)

        moved: list[dict[str, Any]] = []
        for question in QUESTIONS:
            text, report = _ask(client, question)
            assert report["mode"] == "progressive", report
            points = report["points"]
            # The 0.5B sketcher's outline length depends on the CPU's kernels (two points for
            # the first question on an AVX2-only EPYC); any outline may overflow.
            assert points, report
            for point in points:
                assert point["edge"] in {"edge-1", "cloud"}, point
                assert point["tokens"] > 0, point  # every point was written
                assert point["title"] in text
            overflowed = [p for p in points if p["overflow"] is not None]
            assert len(overflowed) <= DEFAULT_MAX_POINTS, report
            for point in overflowed:
                assert point["edge"] == "cloud", point
                decision = point["overflow"]
                assert decision["edge"] == "edge-1"
                assert decision["cloud_finish_s"] * DEFAULT_MARGIN < decision["edge_finish_s"]
            moved += overflowed
            if moved:
                break
        assert moved, "no point moved to the cloud from an edge at a fifth of a core"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
