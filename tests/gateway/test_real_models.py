"""The gateway end to end with real models: edge agents and a cloud stand-in running the 0.5B.

The model servers run as real processes (``pice edge serve``, one thread each), the gateway
under uvicorn in this process, and everything is driven with the official ``openai`` SDK.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pice_gateway.app import create_app
from pice_gateway.placement.rate import MIN_FINISHED_POINTS
from pice_gateway.settings import GatewaySettings
from tests.gateway.fakes import serve
from tests.gateway.test_metrics import scrape
from tests.support.processes import ServerProcess, free_port, pice_argv

pytestmark = pytest.mark.model

MODEL = "qwen2.5-coder-0.5b-instruct"
KEY = "test-key"
QUESTION = "What are good ways to stay healthy?"


def model_server(tmp: Path, name: str, *extra: str) -> ServerProcess:
    port = free_port()
    argv = pice_argv(
        "edge", "serve", "--model", MODEL, "--port", str(port), "--threads", "1", *extra
    )
    return ServerProcess(argv, port, tmp / f"{name}.log")


def gateway_settings(
    cloud: ServerProcess, edges: dict[str, ServerProcess], **progressive: Any
) -> GatewaySettings:
    return GatewaySettings(
        api_keys=[KEY],
        max_body_bytes=20_000,
        cloud={"base_url": cloud.base_url + "/v1", "model": MODEL},
        edges=[{"name": name, "url": edge.base_url} for name, edge in edges.items()],
        edge_client={"poll_interval": 0.25},
        router={"enabled": False},  # tests/gateway/test_router_real.py has the real router
        progressive={
            "max_points": 4,
            "sketch_max_tokens": 64,
            "expansion_max_tokens": 24,
            "edge_stall_seconds": 20,
        }
        | progressive,
    )


@dataclass
class Stack:
    cloud: ServerProcess
    edges: dict[str, ServerProcess]
    gateway_url: str

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway_url + "/v1", api_key=key, max_retries=0, timeout=180
        )


@contextlib.contextmanager
def stack(tmp: Path, cloud: ServerProcess, n_edges: int) -> Iterator[Stack]:
    started: list[ServerProcess] = []
    try:
        edges = {}
        for i in range(1, n_edges + 1):
            edges[f"edge-{i}"] = model_server(tmp, f"edge-{i}").start(timeout=180)
            started.append(edges[f"edge-{i}"])
        with serve(create_app(gateway_settings(cloud, edges))) as gateway_url:
            yield Stack(cloud, edges, gateway_url)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = model_server(tmp_path_factory.mktemp("cloud"), "cloud").start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(cloud: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("shared"), cloud, n_edges=2) as running:
        yield running


def ask(model: str = "pice-progressive", **kwargs: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": QUESTION}], **kwargs}


def running_sequences(edge: ServerProcess) -> int:
    return int(httpx.get(edge.base_url + "/v1/load", timeout=5).json()["running_sequences"])


def test_non_stream_progressive_answer(shared: Stack) -> None:
    completion = shared.client().chat.completions.create(**ask())
    text = completion.choices[0].message.content
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert report["mode"] == "progressive", text
    points = report["points"]
    assert 1 <= len(points) <= 4
    assert text is not None
    for n, point in enumerate(points, start=1):
        assert f"{n}. **{point['title']}**:" in text
        assert point["edge"] in shared.edges
        assert point["finish_reason"] in ("stop", "length")
        assert point["tokens"] > 0
        # The placement's estimate and the point's times, as an operator checks them.
        assert point["estimate_s"] > 0
        assert point["estimate"]["decode_s"] > 0
        assert point["estimate"]["rate"] > 0
        assert 0 <= point["placed_ms"] <= point["done_ms"] <= report["timings"]["total_ms"]
    usage = completion.usage
    assert usage is not None
    cloud, edge = report["cloud_usage"], report["edge_usage"]
    assert cloud["completion_tokens"] > 0
    assert edge["completion_tokens"] > 0
    assert usage.completion_tokens == cloud["completion_tokens"] + edge["completion_tokens"]
    assert usage.prompt_tokens == cloud["prompt_tokens"] + edge["prompt_tokens"]


def test_stream_arrives_incrementally_with_usage_last(shared: Stack) -> None:
    start = time.monotonic()
    arrivals: list[float] = []
    chunks = []
    stream = shared.client().chat.completions.create(
        **ask(), stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) > 10
    assert arrivals[-1] - arrivals[0] > 0.5, "content must stream, not arrive in one burst"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens > 0
    assert last.model_extra["pice"]["timings"]["first_token_ms"] < 1000 * arrivals[-1]  # type: ignore[index]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("1. **")


def test_the_frame_and_point_words_on_real_models(shared: Stack) -> None:
    # The 0.5B may outline with a frame, outline without one, or write prose (then the cloud
    # answers the question itself): each way, what the report says must match the text.
    completion = shared.client().chat.completions.create(
        **ask(), extra_body={"pice": {"frame": True, "point_words": 20}}
    )
    text = completion.choices[0].message.content or ""
    report = completion.model_extra["pice"]  # type: ignore[index]
    sketch = report["sketch"]
    assert sketch["frame"] is True
    assert report["point_words"] == 20
    if report["reason"] == "sketch_prose":
        assert report["mode"] == "cloud"
        assert report["points"] == []
        assert text.strip()
        return
    assert report["mode"] == "progressive", text
    first = text.find("1. **")
    assert first >= 0, text
    opening = text[:first]
    assert bool(opening) == sketch["opening"], text
    if sketch["opening"]:
        assert opening.endswith("\n\n"), text
        assert opening.strip(), text
        assert not opening.lstrip().startswith(("1", "-", "*")), "the opening is prose"
    for point in report["points"]:
        # 20 words at 2.4 tokens a word raise the 24-token cap of this stack to 48.
        assert 0 < point["tokens"] <= 48
    last_line = text.rstrip().rsplit("\n", 1)[-1]
    last_header = f"{len(report['points'])}. **"
    if sketch["closing"]:
        assert not last_line.startswith(last_header), "a closing ends the text"
        assert last_header in text


def test_cloud_model_and_errors(shared: Stack) -> None:
    client = shared.client()
    answer = client.chat.completions.create(**ask(model="pice-cloud", max_tokens=8))
    assert answer.model == "pice-cloud"
    assert answer.model_extra["pice"]["mode"] == "cloud"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        shared.client(key="wrong").models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(**ask(model="nope"))
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(**ask(n=2))
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.APIStatusError) as big:
        client.chat.completions.create(**ask(messages=[{"role": "user", "content": "x" * 30_000}]))
    assert big.value.status_code == 413


def test_client_disconnect_cancels_edge_sequences(shared: Stack) -> None:
    url = shared.gateway_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}
    busy = 0
    with httpx.stream("POST", url, json=ask(stream=True), headers=headers, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                busy = sum(running_sequences(edge) for edge in shared.edges.values())
                if busy:
                    break
    assert busy > 0, "the edges were decoding when the client left"
    # The gateway closes its edge streams at once (tests/gateway/test_protocol.py times that);
    # an edge drops the sequences at its next engine step, which on a shared 2-core machine
    # can be a few seconds away when a job is still prefilling.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(running_sequences(edge) for edge in shared.edges.values()) == 0:
            break
        time.sleep(0.1)
    assert sum(running_sequences(edge) for edge in shared.edges.values()) == 0


def test_edge_killed_mid_request_still_completes(
    cloud: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with stack(tmp_path_factory.mktemp("kill"), cloud, n_edges=2) as running:
        victim = running.edges["edge-1"]
        killed = False
        chunks = []
        stream = running.client().chat.completions.create(**ask(), stream=True)
        for chunk in stream:
            chunks.append(chunk)
            if not killed and chunk.choices and running_sequences(victim) > 0:
                victim.kill()
                killed = True
        assert killed
        report = chunks[-1].model_extra["pice"]  # type: ignore[index]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        points = report["points"]
        assert all(point["finish_reason"] in ("stop", "length") for point in points), report
        assert any(point["attempts"][:2] == ["edge-1", point["edge"]] for point in points), report
        assert all(point["edge"] != "edge-1" or len(point["attempts"]) == 1 for point in points)
        for n, point in enumerate(points, start=1):
            assert f"{n}. **{point['title']}**:" in text


def test_a_point_short_of_room_gets_a_candidate_from_the_other_edge(
    cloud: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The ensemble across edges on real agents: edge-2 decodes one sequence at a time, so a
    point placed there gets one candidate of its own and a companion on edge-1, and the answer
    shows the one the ensemble chose."""
    tmp = tmp_path_factory.mktemp("across")
    roomy = model_server(tmp, "edge-1").start(timeout=180)
    try:
        tiny = model_server(tmp, "edge-2", "--max-seqs", "1").start(timeout=180)
        try:
            edges = {"edge-1": roomy, "edge-2": tiny}
            settings = gateway_settings(
                cloud,
                edges,
                placement="round-robin",  # point 0 on edge-1, point 1 on edge-2
                ensemble_candidates=2,
                ensemble_max_slowdown=float("inf"),  # room alone decides
            )
            with serve(create_app(settings)) as url:
                client = openai.OpenAI(
                    base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=180
                )
                completion = client.chat.completions.create(**ask())
            report = completion.model_extra["pice"]  # type: ignore[index]
            points = report["points"]
            assert len(points) >= 2, report
            assert points[0]["candidates"] == []  # the first point streams live
            second = points[1]
            assert second["attempts"] == ["edge-2"], report
            assert [(c["candidate"], c["edge"]) for c in second["candidates"]] == [
                (0, "edge-2"),
                (1, "edge-1"),
            ], report
            assert all(c["finish_reason"] in ("stop", "length") for c in second["candidates"])
            assert all(c["tokens"] > 0 for c in second["candidates"])
            winner = second["candidates"][second["winner"]]
            assert second["edge"] == winner["edge"]
            assert second["tokens"] == winner["tokens"]
            text = completion.choices[0].message.content or ""
            assert f"2. **{second['title']}**:" in text
            assert running_sequences(roomy) == running_sequences(tiny) == 0
        finally:
            tiny.stop()
    finally:
        roomy.stop()


def per_edge(stack: Stack, metric: str) -> dict[str, tuple[dict[str, str], float]]:
    """Each edge's sample of ``metric`` from the gateway's ``/metrics``, with its labels."""
    return {
        dict(labels)["edge"]: (dict(labels), sample)
        for (name, labels), sample in scrape(stack.gateway_url + "/v1").items()
        if name == metric
    }


def points_timed(stack: Stack) -> dict[str, float]:
    """Each edge's ``pice_gateway_edge_points_timed_total``."""
    samples = per_edge(stack, "pice_gateway_edge_points_timed_total")
    return {edge: sample for edge, (_, sample) in samples.items()}


def test_points_finished_on_real_edges_become_the_rate_eft_places_by(shared: Stack) -> None:
    """The points fit (``progressive.placement_rate: points``) on real agents: once 8 points
    have been timed on an edge, the estimates of the points placed there use the curve fitted
    to them, and ``/metrics`` exports it."""
    client = shared.client()
    timed = points_timed(shared)
    for _ in range(12):
        if max(timed.values()) >= MIN_FINISHED_POINTS:
            break
        client.chat.completions.create(**ask())
        timed = points_timed(shared)
    fitted = {edge for edge, n in timed.items() if n >= MIN_FINISHED_POINTS}
    assert fitted, timed
    # Sources are fixed at placement, and an edge's count only grows: every point placed on
    # an edge fitted before this request must read its points fit.
    completion = client.chat.completions.create(**ask())
    report = completion.model_extra["pice"]  # type: ignore[index]
    for point in report["points"]:
        estimate = point["estimate"]
        if point["edge"] in fitted:
            assert estimate["rate_source"] == "points", point
        else:
            assert estimate["rate_source"] in ("decode", "prior"), point
        assert estimate["rate"] > 0
        assert 0.0 <= estimate["alpha"] <= 1.0
    curves = {
        edge: (labels["source"], sample)
        for edge, (labels, sample) in per_edge(
            shared, "pice_gateway_edge_rate_single_tokens_per_second"
        ).items()
    }
    for edge in fitted:
        source, single = curves[edge]
        assert source == "points"
        # A point's time includes its prefill and the batch it joined: the fit reads the
        # 0.5B on one thread slower than its bare decode, but not absurdly so.
        assert 0.5 < single < 200, curves
