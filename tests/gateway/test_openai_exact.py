"""stop, max_tokens, finish_reason and the penalties on the progressive path, with fake upstreams.

The fake edge writes six one-word "tokens" per point (``Body of point N from EDGE.``) and ends
at ``max_tokens`` with ``finish_reason: "length"``; the fake cloud's sketch is seven pieces
(``1. Alpha point\\n2. Beta point\\n3. Gamma point\\n``), cut the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.gateway.conftest import fake_stack as shared_fake_stack
from tests.gateway.conftest import openai_client
from tests.gateway.fakes import CloudScript, EdgeScript

WHOLE = (
    "1. **Alpha point**: Body of point 1 from e1.\n"
    "2. **Beta point**: Body of point 2 from e1.\n"
    "3. **Gamma point**: Body of point 3 from e1.\n"
)


# Polled rarely (the first poll is at start-up), so a busy machine that delays one ``/v1/load``
# past its timeout cannot mark the edge down mid-test and send points to the cloud.
STEADY_EDGES = {"poll_interval": 5.0}


@contextlib.contextmanager
def fake_stack(cloud: CloudScript, edges: list[EdgeScript], **overrides: Any) -> Iterator[str]:
    with shared_fake_stack(cloud, edges, edge_client=STEADY_EDGES, **overrides) as url:
        yield url


def expansion_budgets(cloud: CloudScript, edge: EdgeScript) -> set[int]:
    """Every expansion's ``max_tokens``, on the edge or on the cloud (a point goes to the cloud
    when a busy machine makes the edge miss a load poll)."""
    return {job["max_tokens"] for job in edge.jobs} | {
        request["max_tokens"] for request in cloud.requests[1:]
    }


def ask(**kwargs: Any) -> dict[str, Any]:
    return {
        "model": "pice-progressive",
        "messages": [{"role": "user", "content": "How to stay healthy?"}],
        **kwargs,
    }


def streamed(sdk: openai.OpenAI, **kwargs: Any) -> tuple[list[str], str | None, dict[str, Any]]:
    """The content deltas, the finish_reason, and the ``pice`` report of a streamed answer."""
    deltas: list[str] = []
    finish: str | None = None
    pice: dict[str, Any] = {}
    for chunk in sdk.chat.completions.create(**ask(**kwargs), stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            if choice.finish_reason is not None:
                assert finish is None, "one finish_reason, on the last choice chunk"
                finish = choice.finish_reason
        pice = (chunk.model_extra or {}).get("pice", pice)
    return deltas, finish, pice


# (stop sequences, the answer the client must get): a stop inside a body, one spanning a
# point's header and its body, one spanning two points, one in the last point, and a stop that
# is never met (the held-back text comes out at the end).
STOP_CASES = [
    (["of point 1"], "1. **Alpha point**: Body "),
    (["point**: Body"], "1. **Alpha "),
    ([".\n2. **Beta"], "1. **Alpha point**: Body of point 1 from e1"),
    (["nothing", "point 3"], WHOLE.split("point 3")[0]),
    (["e1.\nX", "Gamma point**: Q"], WHOLE),
]


@pytest.mark.parametrize(("stops", "expected"), STOP_CASES)
def test_stop_cuts_the_merged_answer_non_streamed(stops: list[str], expected: str) -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1", token_delay=0.0)]) as url:
        completion = openai_client(url).chat.completions.create(**ask(stop=stops))
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("stops", "expected"), STOP_CASES)
def test_stop_cuts_the_merged_answer_streamed(stops: list[str], expected: str) -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1", token_delay=0.0)]) as url:
        deltas, finish, _ = streamed(openai_client(url), stop=stops)
    assert "".join(deltas) == expected
    assert finish == "stop"


def test_stop_as_a_single_string_is_honoured() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1", token_delay=0.0)]) as url:
        completion = openai_client(url).chat.completions.create(**ask(stop="Beta"))
    assert (
        completion.choices[0].message.content
        == "1. **Alpha point**: Body of point 1 from e1.\n2. **"
    )


def test_a_stop_cancels_the_expansions_still_running() -> None:
    edge = EdgeScript("e1", token_delay=0.2)
    with fake_stack(CloudScript(), [edge]) as url:
        deltas, finish, _ = streamed(openai_client(url), stop=["of point 1"])
        deadline = time.monotonic() + 5
        while edge.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = edge.running
    assert "".join(deltas) == "1. **Alpha point**: Body "
    assert finish == "stop"
    assert edge.cancelled >= 1, "the edge's job was cancelled, not run to its end"
    assert running == 0


@pytest.mark.parametrize(
    ("frame", "sketch_tokens"),
    [
        # Half of what the default caps allow (160 + 8 * 96): the sketch gets half its cap.
        (False, 80),
        # The default frame: its opening's 32 tokens go to the sketch first.
        (None, 112),
    ],
)
def test_max_tokens_gives_the_sketch_its_share_and_each_point_the_server_cap(
    frame: bool | None, sketch_tokens: int
) -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge], progressive={"frame": frame}) as url:
        completion = openai_client(url).chat.completions.create(**ask(max_tokens=464))
    assert cloud.requests[0]["max_tokens"] == sketch_tokens
    # Not an equal share for eight points (48 or 44): the bodies spend the rest in order.
    assert expansion_budgets(cloud, edge) == {96}
    assert completion.choices[0].finish_reason == "stop", "nothing was cut"
    assert completion.choices[0].message.content == WHOLE
    assert (completion.model_extra or {})["pice"]["cut_by_limit"] is False


# With a large sketch cap the sketch gets most of a small limit: ``max_tokens`` 32 leaves the
# bodies 14 tokens (the sketch 18, its whole outline being 7), 27 leaves them 12.
BIG_SKETCH = {"sketch_max_tokens": 1000, "frame": False}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_answer_is_cut_where_the_bodies_reach_the_limit(field: str) -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge], progressive=BIG_SKETCH) as url:
        completion = openai_client(url).chat.completions.create(**ask(**{field: 32}))
    assert cloud.requests[0]["max_tokens"] == 18
    assert expansion_budgets(cloud, edge) == {14}
    # Points 1 and 2 take 6 tokens each; point 3 has 2 left: "Body of", no full sentence,
    # so the cut is marked.
    assert completion.choices[0].message.content == (
        "1. **Alpha point**: Body of point 1 from e1.\n"
        "2. **Beta point**: Body of point 2 from e1.\n"
        "3. **Gamma point**: Body of …\n"
    )
    assert completion.choices[0].finish_reason == "length"
    pice = (completion.model_extra or {})["pice"]
    assert pice["cut_by_limit"] is True
    assert [p["trimmed"] for p in pice["points"]] == [None, None, "length"]
    # The edges wrote points 1 and 2 whole; point 3 was within its own cap, and the merger cut
    # it (when it passed its 2 tokens while live, before its end arrived, or once it ended).
    assert [p["finish_reason"] for p in pice["points"][:2]] == ["stop"] * 2


def test_a_point_the_limit_left_nothing_is_not_shown() -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge], progressive=BIG_SKETCH) as url:
        deltas, finish, pice = streamed(openai_client(url), max_tokens=27)
    assert cloud.requests[0]["max_tokens"] == 15
    assert "".join(deltas) == WHOLE.split("3. **Gamma")[0]
    assert finish == "length"
    assert pice["cut_by_limit"] is True
    assert [p["shown"] for p in pice["points"]] == [True, True, False]


def test_a_point_is_cut_at_what_the_limit_left_and_the_rest_is_cancelled() -> None:
    # Long, slow bodies and a server cap of 8 a point (``max_tokens`` 230: the sketch 216, the
    # bodies 14): point 1 writes 8 of the 14, point 2 may show 6 of its 8, and point 3 gets
    # nothing; its job is cancelled. The edge's setup delay sends points 2 and 3 as one job,
    # which writes them one after the other (the fake's way), so point 3 is still being written.
    cloud = CloudScript()
    edge = EdgeScript("e1", token_delay=0.1, start_delay=0.05, extra_words=40)
    knobs = {**BIG_SKETCH, "expansion_max_tokens": 8}
    with fake_stack(cloud, [edge], progressive=knobs) as url:
        deltas, finish, pice = streamed(openai_client(url), max_tokens=230)
        deadline = time.monotonic() + 5
        while edge.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = edge.running
    assert expansion_budgets(cloud, edge) == {8}
    assert [job["points"] for job in edge.jobs] == [[0], [1, 2]]
    # Each body ends on its last full sentence; "more more" past it is never shown.
    assert "".join(deltas) == (
        "1. **Alpha point**: Body of point 1 from e1.\n"
        "2. **Beta point**: Body of point 2 from e1.\n"
    )
    assert finish == "length"
    assert pice["cut_by_limit"] is True
    assert [p["trimmed"] for p in pice["points"][:2]] == ["length", "length"]
    assert [p["shown"] for p in pice["points"]] == [True, True, False]
    assert edge.cancelled >= 1, "the edge's job was cancelled, not run to its end"
    assert running == 0


def test_a_sketch_cut_by_the_limit_finishes_with_length_streamed() -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge], progressive={"frame": False}) as url:
        # 35: the sketch gets 6 pieces (the third title is cut), the bodies 29 between them.
        deltas, finish, pice = streamed(openai_client(url), max_tokens=35)
    assert cloud.requests[0]["max_tokens"] == 6
    assert expansion_budgets(cloud, edge) == {29}
    assert finish == "length"
    assert "".join(deltas) == WHOLE.split("3. **Gamma")[0], (
        "the outline was cut inside its third title, which is dropped, not expanded"
    )
    assert [p["finish_reason"] for p in pice["points"]] == ["stop"] * 2
    assert [p["trimmed"] for p in pice["points"]] == [None, None]
    assert pice["cut_by_limit"] is False


def test_a_point_cut_by_the_server_cap_finishes_with_length() -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge], progressive={"expansion_max_tokens": 3}) as url:
        completion = openai_client(url).chat.completions.create(**ask())
    assert expansion_budgets(cloud, edge) == {3}
    lines = (completion.choices[0].message.content or "").splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["Body of point …"] * 3, lines
    assert completion.choices[0].finish_reason == "length"
    pice = (completion.model_extra or {})["pice"]
    assert [p["finish_reason"] for p in pice["points"]] == ["length"] * 3
    assert pice["cut_by_limit"] is False


def test_without_a_limit_nothing_is_cut_and_the_reason_is_stop() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1", token_delay=0.0)]) as url:
        deltas, finish, _ = streamed(openai_client(url))
    assert "".join(deltas) == WHOLE
    assert finish == "stop"


def test_penalties_reach_the_edges_and_not_the_sketch() -> None:
    cloud, edge = CloudScript(), EdgeScript("e1", token_delay=0.0)
    with fake_stack(cloud, [edge]) as url:
        openai_client(url).chat.completions.create(
            **ask(presence_penalty=0.5, frequency_penalty=-0.25)
        )
    assert edge.jobs
    assert all(job["presence_penalty"] == 0.5 for job in edge.jobs)
    assert all(job["frequency_penalty"] == -0.25 for job in edge.jobs)
    sketch = cloud.requests[0]
    assert "presence_penalty" not in sketch
    assert "frequency_penalty" not in sketch


def test_penalties_are_forwarded_on_the_cloud_path() -> None:
    cloud = CloudScript()
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        openai_client(url).chat.completions.create(
            **ask(model="pice-cloud", presence_penalty=1.0, frequency_penalty=0.5)
        )
    assert cloud.requests[0]["presence_penalty"] == 1.0
    assert cloud.requests[0]["frequency_penalty"] == 0.5


def test_unset_penalties_are_not_sent_to_edges() -> None:
    edge = EdgeScript("e1", token_delay=0.0)
    with fake_stack(CloudScript(), [edge]) as url:
        openai_client(url).chat.completions.create(**ask())
    assert all("presence_penalty" not in job for job in edge.jobs)


def test_usage_of_a_stopped_answer_counts_the_cancelled_work() -> None:
    edge = EdgeScript("e1", token_delay=0.2)
    with fake_stack(CloudScript(), [edge]) as url:
        completion = openai_client(url).chat.completions.create(**ask(stop=["of point 1"]))
    pice = (completion.model_extra or {})["pice"]
    usage = completion.usage
    assert usage is not None
    # The whole sketch (7 chunks), and the cancelled edge job's prompt (its ``start`` event):
    # dispatch counts an edge job's completion tokens per finished point.
    assert pice["cloud_usage"]["completion_tokens"] == 7
    assert pice["edge_usage"]["prompt_tokens"] >= 20
    assert pice["usage_estimated"] is True
    assert usage.completion_tokens == (
        pice["cloud_usage"]["completion_tokens"] + pice["edge_usage"]["completion_tokens"]
    )
