"""Distillation against a scripted teacher: the gateway's prompts, filtering, resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from pice_gateway.progressive.sketch import SKETCH_SYSTEM_OUTLINE
from pice_tune.dataset import TuneQuestion, read_dataset
from pice_tune.distill import Teacher, TeacherConfig, build_dataset, parse_sketch, raw_cache_path

QUESTIONS = [
    TuneQuestion("t1", "generic", "How can I keep a houseplant alive while travelling?", "train"),
    TuneQuestion("t2", "generic", "How do I prepare for a hike in hot weather?", "train"),
    TuneQuestion("d1", "generic", "What are good ways to declutter a small flat?", "dev"),
]
BODIES = {
    1: "1. **Water first**: Soak the soil well the day before you leave.",  # echo stripped
    2: "Move it away from the window.",
    3: "Ask a neighbour to check on",  # truncated
    4: "Move it away from the window.",  # a copy of point 2
}


class ScriptedTeacher:
    """An OpenAI chat endpoint that outlines four points and expands each as scripted."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        last = body["messages"][-1]["content"]
        finish = "stop"
        if body["messages"][0]["content"].startswith(SKETCH_SYSTEM_OUTLINE):
            text = "1. Water first\n2. Less light\n3. Neighbour\n4. Shade"
        else:
            index = int(last.split("Write point ")[1].split(" ")[0])
            text = BODIES[index]
        message = {"role": "assistant", "content": text}
        return httpx.Response(
            200, json={"choices": [{"index": 0, "message": message, "finish_reason": finish}]}
        )


def teacher(script: ScriptedTeacher) -> Teacher:
    client = httpx.Client(transport=httpx.MockTransport(script))
    return Teacher(TeacherConfig(base_url="http://teacher/v1", model="teach"), client=client)


def test_parse_sketch_reads_an_outline_and_refuses_prose() -> None:
    assert parse_sketch("1. A point\n2. Another point\n") == ["A point", "Another point"]
    assert parse_sketch("Just an answer in prose.") == []


def test_the_dataset_keeps_good_expansions_and_counts_the_drops(tmp_path: Path) -> None:
    script = ScriptedTeacher()
    out = tmp_path / "data.jsonl"
    manifest = build_dataset(teacher(script), QUESTIONS, out, manifest={"teacher": "teach"})
    examples, digest = read_dataset(out)
    assert manifest["data_sha256"] == digest
    # Two train questions (the dev one is never asked), each: one sketch + four expansions.
    assert len(script.requests) == 2 * 5
    assert all("declutter" not in json.dumps(r) for r in script.requests)
    assert [(e.question_id, e.index, e.body) for e in examples] == [
        ("t1", 0, "Soak the soil well the day before you leave."),
        ("t1", 1, "Move it away from the window."),
        ("t2", 0, "Soak the soil well the day before you leave."),
        ("t2", 1, "Move it away from the window."),
    ]
    assert manifest["dropped"] == {"duplicate_point": 2, "truncated": 2}
    # The expansion prompt is the gateway's cloud expansion prompt, with the whole outline.
    expand = script.requests[1]["messages"][-1]["content"]
    assert "Outline of the answer:\n1. Water first\n2. Less light" in expand


def test_an_interrupted_run_resumes_without_asking_again(tmp_path: Path) -> None:
    out = tmp_path / "data.jsonl"
    first = ScriptedTeacher()
    build_dataset(teacher(first), QUESTIONS[:1], out, manifest={})
    # A line cut short by a crash is ignored, and that question is asked again.
    with raw_cache_path(out).open("a") as f:
        f.write('{"question_id": "t2", "sketch')
    second = ScriptedTeacher()
    manifest = build_dataset(teacher(second), QUESTIONS, out, manifest={})
    assert len(second.requests) == 5  # only t2
    assert manifest["examples"] == 4
