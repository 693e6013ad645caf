"""The opt-in point-level events (``"pice": {"events": true}``, ``progressive/watch.py``).

Three promises: without the opt-in a stream is byte for byte what it was before the events
existed; with it, the real OpenAI SDK still yields the same chunks and text (the events are SSE
comments it skips); and the events tell what happened: the route, the sketch as written, each
point's attempts and text, failovers.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import pice_gateway.render as render
from pice_gateway.observers import RequestObservation
from pice_gateway.progressive.accounting import PiceReport, PointReport, Timings
from pice_gateway.progressive.pipeline import Finished, RunEvent, TextOut
from tests.gateway.conftest import fake_stack, openai_client
from tests.gateway.fakes import OUTLINE, CloudScript, EdgeScript, point_words

QUESTION = [{"role": "user", "content": "How to stay healthy?"}]
WATCH = {"pice": {"events": True}}


def ask(model: str = "pice", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": QUESTION, "stream": True, **fields}


def raw_stream(url: str, body: dict[str, Any]) -> bytes:
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return response.read()


def blocks(raw: bytes) -> list[bytes]:
    """The stream's events (blank-line separated blocks), without sse-starlette's pings."""
    return [block for block in raw.split(b"\r\n\r\n") if block and block != b": ping"]


def watch_events(raw: bytes) -> list[dict[str, Any]]:
    prefix = b": pice "
    return [json.loads(block[len(prefix) :]) for block in blocks(raw) if block.startswith(prefix)]


def answer_text(raw: bytes) -> str:
    text = ""
    for block in blocks(raw):
        if block.startswith(b"data: {"):
            for choice in json.loads(block[len(b"data: ") :])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


# -- without the opt-in: unchanged ----------------------------------------------------------


class _ScriptedRun:
    """What ``progressive_stream`` reads of a run: its events."""

    def __init__(self, report: PiceReport) -> None:
        self.report = report

    async def events(self) -> AsyncIterator[RunEvent]:
        yield TextOut("1. **Alpha**:")
        yield TextOut(" Body é “quoted”.\n")
        yield Finished(self.report, "stop")


# The framing and chunks of ``progressive_stream`` as the gateway wrote them before the events
# existed (captured from that code); ``{pice}`` is the report, whose schema may grow.
_BEFORE = {
    False: (
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        '"finish_reason":null,"logprobs":null}]}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":"1. **Alpha**:"},'
        '"finish_reason":null,"logprobs":null}]}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":'
        '" Body é “quoted”.\\n"},"finish_reason":null,"logprobs":null}]}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":null},'
        '"finish_reason":"stop","logprobs":null}],"pice":{pice}}\r\n\r\n'
        "data: [DONE]\r\n\r\n"
    ),
    True: (
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        '"finish_reason":null,"logprobs":null}],"usage":null}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":"1. **Alpha**:"},'
        '"finish_reason":null,"logprobs":null}],"usage":null}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":'
        '" Body é “quoted”.\\n"},"finish_reason":null,"logprobs":null}],"usage":null}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[{"index":0,"delta":{"role":null,"content":null},'
        '"finish_reason":"stop","logprobs":null}],"usage":null}\r\n\r\n'
        'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
        '"model":"pice","choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,'
        '"total_tokens":0},"pice":{pice}}\r\n\r\n'
        "data: [DONE]\r\n\r\n"
    ),
}


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_stream_without_the_opt_in_is_byte_for_byte_what_it_was(
    include_usage: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "completion_id", lambda: "chatcmpl-fixed")
    monkeypatch.setattr(render, "now", lambda: 1700000000)
    report = PiceReport(
        mode="progressive",
        reason="outline",
        points=[PointReport(title="Alpha", edge="e1", attempts=["e1"], tokens=3)],
        timings=Timings(sketch_ms=1.0, first_token_ms=2.0, expansion_ms=3.0, total_ms=4.0),
    )
    observation = RequestObservation((), request_id="r", model="pice", stream=True)
    stream = render.progressive_stream(
        _ScriptedRun(report),  # type: ignore[arg-type]
        "pice",
        include_usage=include_usage,
        observation=observation,
    )
    sent = b"".join([bytes(event) async for event in stream])  # type: ignore[arg-type]
    pice = json.dumps(report.model_dump(mode="json"), separators=(",", ":"))
    assert sent == _BEFORE[include_usage].replace("{pice}", pice).encode()


def _normalised(raw: bytes) -> dict[str, Any]:
    """What a client reads from the ``data:`` events, with what differs between two runs of
    one request set aside: the completion's id and time, the report's timings (and each
    point's, with the estimate it was placed with and its inputs, which read the measured
    round trip and load), and how the text was cut into chunks (the pipeline sends what is
    ready when it is ready)."""
    text: list[str] = []
    ends: list[Any] = []
    chunks: list[dict[str, Any]] = []
    done = False
    for block in blocks(raw):
        assert block.startswith(b"data: "), block
        data = block[len(b"data: ") :]
        if data == b"[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        chunks.append(chunk)
        for choice in chunk.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
            if choice.get("finish_reason"):
                ends.append(choice["finish_reason"])
    last = chunks[-1]
    report = last.get("pice")
    if report is not None:
        report["timings"] = None
        for point in report["points"]:
            point.update(placed_ms=None, done_ms=None, estimate_s=None, estimate=None)
    # Prompt tokens count each edge job's prefill, and how a sketch's points group into jobs
    # follows their timing (a busy CI machine made two jobs of one run's three points): only
    # the completion tokens must match, and each total must add up.
    usage = last.get("usage")
    for counted in [usage, report["edge_usage"] if report is not None else None]:
        if counted is not None:
            prompt, total = counted.pop("prompt_tokens"), counted.pop("total_tokens")
            assert total == prompt + counted["completion_tokens"]
    return {
        "text": "".join(text),
        "finish": ends,
        "usage": usage,
        "pice": report,
        "keys": sorted({key for chunk in chunks for key in chunk}),
        "model": {chunk["model"] for chunk in chunks},
        "done": done,
    }


@pytest.mark.parametrize("model", ["pice", "pice-cloud"])
def test_the_opt_in_only_adds_comments(model: str) -> None:
    """With one edge (so the same placement every time) the stream with the events, less the
    comments, is the stream without them; and without them there is no ``pice`` comment."""
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        plain = raw_stream(url, ask(model, stream_options={"include_usage": True}))
        watched = raw_stream(url, ask(model, stream_options={"include_usage": True}, **WATCH))
    assert not watch_events(plain)
    assert all(not block.startswith(b":") for block in blocks(plain))
    events = watch_events(watched)
    assert events, "the opt-in added events"
    bare = b"\r\n\r\n".join(b for b in blocks(watched) if not b.startswith(b": pice "))
    assert _normalised(bare) == _normalised(plain)


# -- the OpenAI SDK --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["pice", "pice-cloud"])
def test_the_openai_sdk_sees_the_same_chunks_and_text_with_the_events_on(model: str) -> None:
    def chunks(url: str, extra_body: dict[str, Any] | None) -> list[dict[str, Any]]:
        stream = openai_client(url).chat.completions.create(
            model=model,
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra_body,
        )
        return [chunk.model_dump() for chunk in stream]

    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        plain = chunks(url, None)
        watched = chunks(url, WATCH)
        # The events really were on the wire for the SDK to skip.
        assert watch_events(raw_stream(url, ask(model, **WATCH)))

    def text(chunks: list[dict[str, Any]]) -> str:
        return "".join(c["delta"]["content"] or "" for chunk in chunks for c in chunk["choices"])

    def finish(chunks: list[dict[str, Any]]) -> list[str]:
        return [
            c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]
        ]

    assert text(watched) == text(plain)
    assert text(plain), "an answer was streamed"
    assert finish(watched) == finish(plain) == ["stop"]
    usage, plain_usage = watched[-1]["usage"], plain[-1]["usage"]
    assert usage is not None
    assert plain_usage is not None
    assert usage["completion_tokens"] == plain_usage["completion_tokens"]
    # Prompt tokens count each edge job's prefill, and how the points of a sketch group
    # into jobs follows their timing (a loaded CI machine once made two jobs of one run's).
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if model == "pice-cloud":
        assert usage == plain_usage
    assert all(set(chunk) >= {"id", "choices", "model", "object"} for chunk in watched)
    if model == "pice":
        # A progressive answer's chunking follows the timing of its points (a later point's
        # text waits for its turn, then goes out as one delta), so two runs of the same answer
        # may split it differently; the text, the end and the usage above are what must agree.
        return
    assert len(watched) == len(plain)
    for mine, theirs in zip(watched, plain, strict=True):
        for chunk in (mine, theirs):
            chunk["id"] = chunk["created"] = None
            if chunk.get("pice"):
                chunk["pice"]["timings"] = None
        assert mine == theirs


# -- what the events say ---------------------------------------------------------------------


def test_the_events_show_route_sketch_points_and_the_answer() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1"), EdgeScript("e2")]) as url:
        raw = raw_stream(url, ask(**WATCH))
    events = watch_events(raw)
    kinds = [event["type"] for event in events]
    assert events[0] == {
        "type": "route",
        "mode": "progressive",
        "reason": "outline",
        "router": None,
        "load": None,
    }
    sketch = "".join(e["text"] for e in events if e["type"] == "sketch_delta")
    assert sketch == OUTLINE
    [sketch_done] = [e for e in events if e["type"] == "sketch_done"]
    assert sketch_done == {"type": "sketch_done", "outline": True, "points": 3}
    found = [(e["point"], e["title"]) for e in events if e["type"] == "point_found"]
    assert found == [(0, "Alpha point"), (1, "Beta point"), (2, "Gamma point")]
    assert {e["section"] for e in events if e["type"] == "point_found"} == {None}
    starts = {e["point"]: e["source"] for e in events if e["type"] == "point_start"}
    assert set(starts) == {0, 1, 2}
    assert set(starts.values()) == {"e1", "e2"}, "the default placement spreads the points"
    for point, source in starts.items():
        body = "".join(point_words(point, source))
        deltas = [e for e in events if e["type"] == "point_delta" and e["point"] == point]
        assert all(d["source"] == source and d["candidate"] == 0 for d in deltas)
        assert "".join(d["text"] for d in deltas) == body
        [done] = [e for e in events if e["type"] == "point_done" and e["point"] == point]
        assert done == {
            "type": "point_done",
            "point": point,
            "source": source,
            "candidate": 0,
            "text": body,
            "finish_reason": "stop",
            "tokens": 6,
            "trimmed": None,
        }
        # Each point's events come in their order: found, started, its text, done.
        own = [e["type"] for e in events if e.get("point") == point]
        assert own == ["point_found", "point_start", *["point_delta"] * len(deltas), "point_done"]
    assert not {"failover", "hedge"} & set(kinds)
    # The answer is what the points' events assemble.
    expected = "".join(
        f"{n + 1}. **{title}**: {''.join(point_words(n, starts[n]))}\n" for n, title in found
    )
    assert answer_text(raw) == expected


def test_a_failover_is_an_event_and_the_point_restarts_elsewhere() -> None:
    # Both edges write the same words (one model), so the answer does not show the seam.
    edges = [EdgeScript("e1", author="m"), EdgeScript("e2", behaviour="die", author="m")]
    with fake_stack(CloudScript(), edges) as url:
        raw = raw_stream(url, ask(**WATCH))
    events = watch_events(raw)
    failovers = [e for e in events if e["type"] == "failover"]
    assert failovers
    for failover in failovers:
        assert failover["source"] == "e2"
        assert failover["reason"]
        point = failover["point"]
        starts = [e["source"] for e in events if e["type"] == "point_start" and e["point"] == point]
        assert starts == ["e2", "e1"]
        [done] = [e for e in events if e["type"] == "point_done" and e["point"] == point]
        assert done["source"] == "e1"
        assert events.index(failover) < events.index(done)
    assert answer_text(raw).count("from m.") == 3


def test_a_hedge_and_its_outcome_are_events() -> None:
    # The slow edge writes one word of each point and goes silent; the hedge on the fast edge
    # finishes them (as in test_hedging.py).
    edges = [
        EdgeScript("slow", behaviour="stall", author="twin"),
        EdgeScript("fast", author="twin"),
    ]
    hedging = {"hedging": {"enabled": True, "factor": 0.01, "floor_seconds": 0.2}}
    with fake_stack(CloudScript(), edges, progressive=hedging) as url:
        raw = raw_stream(url, ask("pice-progressive", **WATCH))
    events = watch_events(raw)
    hedges = [e for e in events if e["type"] == "hedge"]
    assert hedges
    for hedge in hedges:
        assert (hedge["source"], hedge["hedge"]) == ("slow", "fast")
        assert hedge["elapsed_s"] > 0
        point = hedge["point"]
        mine = [e for e in events if e.get("point") == point]
        settled = [e for e in mine if e["type"] == "hedge_settled"]
        assert settled == [{"type": "hedge_settled", "point": point, "winner": "fast"}]
        # The duplicate takes over: the slow attempt fails over to it, which finishes.
        assert [e["source"] for e in mine if e["type"] == "point_start"] == ["slow", "fast"]
        assert mine[-1]["type"] == "point_done"
        assert mine[-1]["source"] == "fast"
        assert mine.index(hedge) < mine.index(settled[0])
    assert answer_text(raw).count("from twin.") == 3


def test_the_cloud_path_opens_with_its_route() -> None:
    with fake_stack(CloudScript(answer="Plain cloud answer."), [EdgeScript("e1")]) as url:
        raw = raw_stream(url, ask("pice-cloud", **WATCH))
    events = watch_events(raw)
    assert events == [
        {"type": "route", "mode": "cloud", "reason": "model", "router": None, "load": None}
    ]
    assert blocks(raw)[0].startswith(b": pice "), "the route comes before any chunk"
    assert answer_text(raw) == "Plain cloud answer."


def test_a_direct_sketch_reports_no_outline() -> None:
    script = CloudScript(sketch="DIRECT\nFour.")
    with fake_stack(script, [EdgeScript("e1")]) as url:
        raw = raw_stream(url, ask(**WATCH))
    events = watch_events(raw)
    assert "".join(e["text"] for e in events if e["type"] == "sketch_delta") == "DIRECT\nFour."
    assert [e for e in events if e["type"] == "sketch_done"] == [
        {"type": "sketch_done", "outline": False, "points": 0}
    ]
    assert answer_text(raw) == "Four."


def test_events_must_be_a_boolean_and_do_not_change_a_completion() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        refused = httpx.post(
            url + "/chat/completions",
            json={**ask(), "pice": {"events": "yes"}},
            timeout=30,
        )
        completion = httpx.post(
            url + "/chat/completions", json={**ask(stream=False), **WATCH}, timeout=30
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "pice.events"
    assert completion.status_code == 200
    assert re.fullmatch(
        r"(\d\. \*\*\w+ point\*\*: Body of point \d from e1\.\n){3}",
        completion.json()["choices"][0]["message"]["content"],
    )
