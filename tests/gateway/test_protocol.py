"""The gateway's OpenAI protocol and failure handling, against fake upstreams.

Fakes make failures happen on cue; the same features run against real models in
``test_real_models.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import fake_stack, openai_client
from tests.gateway.fakes import CloudScript, EdgeScript, split_words
from tests.support.processes import free_port

EXPECTED = (
    "1. **Alpha point**: Body of point 1 from {0}.\n"
    "2. **Beta point**: Body of point 2 from {1}.\n"
    "3. **Gamma point**: Body of point 3 from {2}.\n"
)


def client(base_url: str, key: str = "none") -> openai.OpenAI:
    return openai_client(base_url, key)


def ask(model: str = "pice", **kwargs: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "How to stay healthy?"}],
        **kwargs,
    }


def sse_payloads(response: httpx.Response) -> list[Any]:
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_models_lists_the_three_names() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        ids = [model.id for model in client(url).models.list()]
    assert ids == ["pice", "pice-progressive", "pice-cloud"]


def test_progressive_non_stream_merges_points_in_order_and_sums_usage() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1"), EdgeScript("e2")]) as url:
        completion = client(url).chat.completions.create(**ask())
    text = completion.choices[0].message.content
    assert text is not None
    report = completion.model_extra["pice"]  # type: ignore[index]
    edges = [point["edge"] for point in report["points"]]
    assert text == EXPECTED.format(*edges)
    assert sorted(set(edges)) == ["e1", "e2"], "the default placement spreads the points"
    assert report["mode"] == "progressive"
    assert [p["title"] for p in report["points"]] == ["Alpha point", "Beta point", "Gamma point"]
    assert all(p["finish_reason"] == "stop" and p["tokens"] == 6 for p in report["points"])
    usage = completion.usage
    assert usage is not None
    cloud, edge = report["cloud_usage"], report["edge_usage"]
    assert cloud["completion_tokens"] == 7  # the fake sketch's chunks
    assert edge["completion_tokens"] == 18
    assert usage.completion_tokens == cloud["completion_tokens"] + edge["completion_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    timings = report["timings"]
    assert 0 < timings["first_token_ms"] <= timings["total_ms"]
    assert timings["sketch_ms"] is not None
    assert timings["expansion_ms"] is not None


def test_stream_with_include_usage_follows_openai_conventions() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        stream = client(url).chat.completions.create(
            **ask(), stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    ids = {chunk.id for chunk in chunks}
    assert len(ids) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens > 0
    assert last.model_extra["pice"]["mode"] == "progressive"  # type: ignore[index]
    finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices]
    assert finishes[-1] == "stop"
    assert all(f is None for f in finishes[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED.format("e1", "e1", "e1")


def test_stream_ends_with_done_and_pice_on_the_last_chunk() -> None:
    with (
        fake_stack(CloudScript(), [EdgeScript("e1")]) as url,
        httpx.stream("POST", url + "/chat/completions", json=ask(stream=True), timeout=30) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        payloads = sse_payloads(r)
    assert payloads[-1] == "[DONE]"
    assert "pice" in payloads[-2]
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in p for p in payloads[:-1])


def test_models_retrieve_serves_each_name_and_404s_others() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")], api_keys=["sekret"]) as url:
        sdk = client(url, key="sekret")
        for name in ("pice", "pice-progressive", "pice-cloud"):
            card = sdk.models.retrieve(name)
            assert (card.id, card.object, card.owned_by) == (name, "model", "pice")
            assert card.created > 0
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.models.retrieve("gpt-nope")
        with pytest.raises(openai.AuthenticationError):
            client(url, key="wrong").models.retrieve("pice")
    assert missing.value.code == "model_not_found"
    assert missing.value.body == {
        "message": "The model 'gpt-nope' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_api_keys_are_enforced() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")], api_keys=["sekret"]) as url:
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, key="wrong").models.list()
        assert info.value.status_code == 401
        assert next(m.id for m in client(url, key="sekret").models.list()) == "pice"


def test_unknown_model_is_404_model_not_found() -> None:
    with (
        fake_stack(CloudScript(), [EdgeScript("e1")]) as url,
        pytest.raises(openai.NotFoundError) as info,
    ):
        client(url).chat.completions.create(**ask(model="gpt-nope"))
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "pice", "temperature": 5}, "temperature"),
        ({"model": "pice-progressive", "n": 2}, "n"),
        (
            {
                "model": "pice-progressive",
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            },
            "tools",
        ),
        (
            {"model": "pice-progressive", "response_format": {"type": "json_object"}},
            "response_format",
        ),
    ],
)
def test_bad_fields_are_400_naming_the_param(kwargs: dict[str, Any], param: str) -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")]) as url:
        model = kwargs.pop("model")
        with pytest.raises(openai.BadRequestError) as info:
            client(url).chat.completions.create(**ask(model=model), **kwargs)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["param"] == param


def test_oversized_body_is_413() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")], max_body_bytes=2000) as url:
        big = ask(messages=[{"role": "user", "content": "x" * 5000}])
        response = httpx.post(url + "/chat/completions", json=big, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_pice_routes_what_progressive_cannot_honour_to_the_cloud() -> None:
    cloud = CloudScript()
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        completion = client(url).chat.completions.create(**ask(), n=2)
    assert completion.choices[0].message.content == "Plain cloud answer."
    assert completion.model == "pice"
    assert completion.model_extra["pice"]["reason"] == "unsupported:n"  # type: ignore[index]
    assert cloud.requests[-1]["n"] == 2
    assert cloud.requests[-1]["model"] == "cloud-model"


def test_pice_cloud_forwards_fields_and_streams_with_pice_on_the_last_chunk() -> None:
    cloud = CloudScript()
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        stream = client(url).chat.completions.create(
            **ask(model="pice-cloud"),
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"top_k": 7},
        )
        chunks = list(stream)
    sent = cloud.requests[-1]
    assert sent["top_k"] == 7
    assert sent["model"] == "cloud-model"
    assert sent["stream"] is True
    assert all(c.model == "pice-cloud" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Plain cloud answer."
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].model_extra["pice"]["mode"] == "cloud"  # type: ignore[index]


def test_a_cloud_stream_without_include_usage_still_counts_the_clouds_tokens() -> None:
    cloud = CloudScript()
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        chunks = list(client(url).chat.completions.create(**ask(model="pice-cloud"), stream=True))
    # The cloud is asked for its usage whatever the client asked ...
    assert cloud.requests[-1]["stream_options"] == {"include_usage": True}
    # ... and the client gets the stream it asked for: no usage chunk, no usage fields.
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    report = chunks[-1].model_extra["pice"]  # type: ignore[index]
    words = len(split_words("Plain cloud answer."))
    assert report["cloud_usage"] == {
        "prompt_tokens": 10, "completion_tokens": words, "total_tokens": 10 + words
    }  # fmt: skip


def test_direct_marker_answers_from_the_sketch_stream() -> None:
    cloud = CloudScript(sketch="DIRECT\n12 * 7 = 84.")
    edge = EdgeScript("e1")
    with fake_stack(cloud, [edge]) as url:
        completion = client(url).chat.completions.create(**ask())
    assert completion.choices[0].message.content == "12 * 7 = 84."
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert (report["mode"], report["reason"]) == ("cloud", "direct")
    assert edge.jobs == []
    assert len(cloud.requests) == 1


def test_no_edges_up_goes_cloud_direct() -> None:
    dead = {"dead": f"http://127.0.0.1:{free_port()}"}
    with fake_stack(CloudScript(), [], extra_edges=dead) as url:
        completion = client(url).chat.completions.create(**ask())
    assert completion.choices[0].message.content == "Plain cloud answer."
    assert completion.model_extra["pice"]["reason"] == "no_edges"  # type: ignore[index]


def test_pice_progressive_without_edges_has_the_cloud_expand_every_point() -> None:
    dead = {"dead": f"http://127.0.0.1:{free_port()}"}
    with fake_stack(CloudScript(), [], extra_edges=dead) as url:
        completion = client(url).chat.completions.create(**ask(model="pice-progressive"))
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert [p["edge"] for p in report["points"]] == ["cloud"] * 3
    assert completion.choices[0].message.content == (
        "1. **Alpha point**: Expanded by the cloud.\n"
        "2. **Beta point**: Expanded by the cloud.\n"
        "3. **Gamma point**: Expanded by the cloud.\n"
    )


def test_each_point_records_its_placement_estimate_and_its_times() -> None:
    # Points slow enough that the first is still decoding when the last is placed.
    with fake_stack(CloudScript(), [EdgeScript("e1", start_delay=1.0)]) as url:
        on_edge = client(url).chat.completions.create(**ask(model="pice-progressive"))
    dead = {"dead": f"http://127.0.0.1:{free_port()}"}
    with fake_stack(CloudScript(), [], extra_edges=dead) as url:
        on_cloud = client(url).chat.completions.create(**ask(model="pice-progressive"))
    for completion, on_an_edge in ((on_edge, True), (on_cloud, False)):
        report = completion.model_extra["pice"]  # type: ignore[index]
        total = report["timings"]["total_ms"]
        for point in report["points"]:
            assert 0 <= point["placed_ms"] <= point["done_ms"] <= total, report
            # The eft estimate is made for an edge only; the cloud's points have none.
            assert (point["estimate_s"] is not None) == on_an_edge, report
            assert (point["estimate"] is not None) == on_an_edge, report
            if on_an_edge:
                assert point["estimate_s"] > 0
                # Its inputs add up to it (within the rounding of each).
                inputs = point["estimate"]
                parts = inputs["rtt_s"] + inputs["wait_s"] + inputs["decode_s"]
                assert abs(parts - point["estimate_s"]) < 0.01, inputs
                assert inputs["busy"] >= 0
                assert inputs["slots"] >= 1
                assert inputs["rate"] > 0
        if on_an_edge:
            # Points placed one after another on one edge: the later ones see the earlier.
            busy = [point["estimate"]["busy"] for point in report["points"]]
            assert busy[0] == 0, busy
            assert busy[-1] >= 1, busy


def test_each_point_names_the_adapter_its_edge_serves() -> None:
    tuned = EdgeScript("tuned", adapter="expander-v1")
    with fake_stack(CloudScript(), [tuned]) as url:
        completion = client(url).chat.completions.create(**ask())
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert [(p["edge"], p["adapter"]) for p in report["points"]] == [("tuned", "expander-v1")] * 3


def test_points_of_a_stock_edge_name_no_adapter() -> None:
    with fake_stack(CloudScript(), [EdgeScript("stock")]) as url:
        completion = client(url).chat.completions.create(**ask())
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert [p["adapter"] for p in report["points"]] == [None] * 3


@pytest.mark.parametrize("behaviour", ["die", "stall", "error"])
def test_failed_edge_loses_its_points_to_another_edge(behaviour: str) -> None:
    bad, good = EdgeScript("bad", behaviour=behaviour), EdgeScript("good")
    with fake_stack(CloudScript(), [bad, good], progressive={"edge_stall_seconds": 0.5}) as url:
        completion = client(url).chat.completions.create(**ask())
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert bad.jobs, "the bad edge got work"
    assert all(point["edge"] == "good" for point in report["points"])
    assert any(point["attempts"][0] == "bad" for point in report["points"])
    text = completion.choices[0].message.content
    assert text is not None
    assert text.count("from good.") == 3


def test_failed_only_edge_falls_back_to_the_cloud() -> None:
    with fake_stack(CloudScript(), [EdgeScript("bad", behaviour="die")]) as url:
        completion = client(url).chat.completions.create(**ask())
    report = completion.model_extra["pice"]  # type: ignore[index]
    assert {p["edge"] for p in report["points"]} == {"cloud"}
    text = completion.choices[0].message.content
    assert text is not None
    assert text.count("Expanded by the cloud.") == 3


def test_cloud_failure_before_the_first_byte_is_503_with_retry_after() -> None:
    cloud = CloudScript(fail_status=500)
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        for stream in (False, True):
            response = httpx.post(url + "/chat/completions", json=ask(stream=stream), timeout=30)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["type"] == "upstream_error"


def test_cloud_failure_mid_sketch_is_an_error_event_then_done() -> None:
    cloud = CloudScript(die_after_chunks=3)
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as r:
            assert r.status_code == 200
            payloads = sse_payloads(r)
        assert payloads[-1] == "[DONE]"
        assert payloads[-2]["error"]["type"] == "upstream_error"
        with pytest.raises(openai.APIError):
            list(client(url).chat.completions.create(**ask(), stream=True))


def test_points_arriving_during_a_jobs_setup_share_the_next_job() -> None:
    edge = EdgeScript("e1", start_delay=0.5)
    with fake_stack(CloudScript(), [edge]) as url:
        client(url).chat.completions.create(**ask())
    assert [job["points"] for job in edge.jobs] == [[0], [1, 2]]
    assert edge.jobs[1]["sketch"] == ["Alpha point", "Beta point", "Gamma point"]


def test_client_disconnect_cancels_the_edge_jobs() -> None:
    edge = EdgeScript("e1", token_delay=0.5)
    with fake_stack(CloudScript(), [edge]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as r:
            # The iterator is kept: a dropped one is closed at once, and closing it closes
            # the connection, so the client would leave before the check below.
            lines = r.iter_lines()
            for line in lines:
                if "Body" in line:
                    break
            # Later points may go out as a job of their own (another candidate count) a moment
            # after the first point's: wait until some edge job is running, then leave.
            deadline = time.monotonic() + 3
            while not edge.running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert edge.running > 0
        deadline = time.monotonic() + 3
        while edge.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert edge.running == 0
        assert edge.cancelled >= 1


def test_client_disconnect_cancels_a_non_streamed_request_too() -> None:
    edge = EdgeScript("e1", token_delay=0.5)
    with fake_stack(CloudScript(), [edge]) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/chat/completions", json=ask(), timeout=1.0)
        assert edge.jobs
        deadline = time.monotonic() + 3
        while edge.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert edge.running == 0
        assert edge.cancelled >= 1
