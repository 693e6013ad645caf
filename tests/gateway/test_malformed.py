"""Malformed requests against the real gateway: each gets an OpenAI-shaped 4xx, never a 5xx,
and the gateway still answers a good request right after it.

One gateway (uvicorn, fake cloud and edge) serves the whole table, so a request that broke
something would show in the good request that follows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript

USER = [{"role": "user", "content": "How to stay healthy?"}]
GOOD = {"model": "pice-progressive", "messages": USER}
# ``_`` marks "no param expected" (the body as a whole is wrong).
_ = None


def with_(**fields: Any) -> dict[str, Any]:
    return {**GOOD, **fields}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != name}


@dataclass(frozen=True)
class Bad:
    name: str
    body: Any
    status: int = 400
    param: str | None = None
    # Raw bytes instead of JSON, and their content type.
    raw: bytes | None = None
    content_type: str = "application/json"
    method: str = "POST"
    path: str = "/chat/completions"


CASES = [
    Bad("not json", _, raw=b"{not json"),
    Bad("empty body", _, raw=b""),
    Bad("json array", [1, 2]),
    Bad("json string", "hello"),
    Bad("json null", _, raw=b"null"),
    Bad("empty object", {}, param="model"),
    Bad("no messages", without("messages"), param="messages"),
    Bad("no model", without("model"), param="model"),
    Bad("messages empty", with_(messages=[]), param="messages"),
    Bad("messages a string", with_(messages="hi"), param="messages"),
    Bad("message without role", with_(messages=[{"content": "x"}]), param="messages.0.role"),
    Bad("unknown role", with_(messages=[{"role": "wizard", "content": "x"}])),
    Bad("content a number", with_(messages=[{"role": "user", "content": 5}])),
    Bad(
        "image part",
        with_(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
    ),
    Bad(
        "text part without text", with_(messages=[{"role": "user", "content": [{"type": "text"}]}])
    ),
    Bad("name a number", with_(messages=[{"role": "user", "content": "x", "name": 5}])),
    Bad("model a number", with_(model=5), param="model"),
    Bad("unknown model", with_(model="gpt-nope"), status=404, param="model"),
    Bad("stream a string", with_(stream="yes"), param="stream"),
    Bad("stream a number", with_(stream=1), param="stream"),
    Bad(
        "stream_options without stream",
        with_(stream_options={"include_usage": True}),
        param="stream_options",
    ),
    Bad("stream_options a string", with_(stream=True, stream_options="x"), param="stream_options"),
    Bad(
        "include_usage a string",
        with_(stream=True, stream_options={"include_usage": "yes"}),
        param="stream_options.include_usage",
    ),
    Bad("max_tokens zero", with_(max_tokens=0), param="max_tokens"),
    Bad("max_tokens negative", with_(max_tokens=-1), param="max_tokens"),
    Bad("max_tokens a string", with_(max_tokens="10"), param="max_tokens"),
    Bad("max_tokens fractional", with_(max_tokens=1.5), param="max_tokens"),
    Bad(
        "max_completion_tokens zero", with_(max_completion_tokens=0), param="max_completion_tokens"
    ),
    Bad("temperature too high", with_(temperature=3), param="temperature"),
    Bad("temperature negative", with_(temperature=-0.1), param="temperature"),
    Bad("temperature a string", with_(temperature="hot"), param="temperature"),
    Bad("top_p zero", with_(top_p=0), param="top_p"),
    Bad("top_p above one", with_(top_p=1.5), param="top_p"),
    Bad("n zero", with_(n=0), param="n"),
    Bad("n a string", with_(n="2"), param="n"),
    Bad("n on the progressive model", with_(n=2), param="n"),
    Bad("five stop sequences", with_(stop=["a", "b", "c", "d", "e"]), param="stop"),
    Bad("stop a number", with_(stop=5), param="stop"),
    Bad("stop numbers", with_(stop=[1, 2]), param="stop.0"),
    Bad("content parts of numbers", with_(messages=[{"role": "user", "content": [5]}])),
    Bad("seed a string", with_(seed="x"), param="seed"),
    Bad("seed fractional", with_(seed=1.5), param="seed"),
    Bad("presence_penalty too high", with_(presence_penalty=3), param="presence_penalty"),
    Bad("frequency_penalty too low", with_(frequency_penalty=-2.5), param="frequency_penalty"),
    Bad("frequency_penalty a string", with_(frequency_penalty="a"), param="frequency_penalty"),
    Bad("logprobs a string", with_(logprobs="yes"), param="logprobs"),
    Bad("top_logprobs without logprobs", with_(top_logprobs=5), param="top_logprobs"),
    Bad("top_logprobs too many", with_(logprobs=True, top_logprobs=25), param="top_logprobs"),
    Bad("logprobs on the progressive model", with_(logprobs=True), param="logprobs"),
    Bad(
        "unknown response_format type",
        with_(response_format={"type": "xml"}),
        param="response_format.type",
    ),
    Bad("response_format a string", with_(response_format="json"), param="response_format"),
    Bad(
        "json_schema without schema",
        with_(response_format={"type": "json_schema"}),
        param="response_format",
    ),
    Bad(
        "json_object on the progressive model",
        with_(response_format={"type": "json_object"}),
        param="response_format",
    ),
    Bad("logit_bias out of range", with_(logit_bias={"1": 200}), param="logit_bias.1"),
    Bad("user a number", with_(user=5), param="user"),
    Bad("tools on the progressive model", with_(tools=[{"type": "function"}]), param="tools"),
    Bad("pice candidates zero", with_(pice={"candidates": 0}), param="pice.candidates"),
    Bad("pice point_words too few", with_(pice={"point_words": 3}), param="pice.point_words"),
    Bad("pice frame a string", with_(pice={"frame": "yes"}), param="pice.frame"),
    Bad(
        "pice object malformed on the cloud path",
        with_(model="pice-cloud", pice={"point_words": 3}),
        param="pice.point_words",
    ),
    Bad("pice point_words a string", with_(pice={"point_words": "long"}), param="pice.point_words"),
    Bad(
        "last turn not the user's",
        with_(messages=[*USER, {"role": "assistant", "content": "x"}]),
        param="messages",
    ),
    Bad("too large", _, raw=b'{"pad": "' + b"x" * 70_000 + b'"}', status=413),
    Bad("plain text body", _, raw=b"hello", content_type="text/plain"),
    Bad("GET chat completions", _, method="GET", status=405),
    Bad("POST models", _, method="POST", path="/models", status=405),
    Bad("unknown path", _, method="POST", path="/completions/chat", status=404),
    Bad("unknown model retrieved", _, method="GET", path="/models/gpt-nope", status=404),
]


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    # The edge is polled rarely (first at start-up): a busy machine delaying one poll past its
    # timeout must not send the good requests' points to the cloud.
    with fake_stack(
        CloudScript(),
        [EdgeScript("e1", token_delay=0.0)],
        max_body_bytes=65_536,
        edge_client={"poll_interval": 5.0},
    ) as url:
        yield url


def send(url: str, case: Bad) -> httpx.Response:
    target = url + case.path
    if case.raw is not None:
        headers = {"content-type": case.content_type}
        return httpx.request(case.method, target, content=case.raw, headers=headers, timeout=30)
    if case.method == "GET":
        return httpx.get(target, timeout=30)
    return httpx.request(case.method, target, json=case.body, timeout=30)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_malformed_request_gets_an_openai_error_and_the_gateway_lives_on(
    gateway: str, case: Bad
) -> None:
    response = send(gateway, case)
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert error["type"]
    assert "Traceback" not in error["message"]
    if case.param is not None:
        assert error["param"] == case.param
    if case.status == 400:
        assert error["type"] == "invalid_request_error"

    good = httpx.post(gateway + "/chat/completions", json=GOOD, timeout=30)
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["message"]["content"].startswith("1. **Alpha point**")


def test_unknown_top_level_fields_are_accepted(gateway: str) -> None:
    body = with_(some_vendor_field={"x": 1}, metadata={"k": "v"}, store=False)
    response = httpx.post(gateway + "/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text


def test_well_typed_fields_are_accepted(gateway: str) -> None:
    body = with_(
        stream=False,
        temperature=1,
        top_p=1,
        max_tokens=500,
        stop="never",
        seed=3,
        user="u",
        n=1,
        presence_penalty=0,
        frequency_penalty=0.5,
        logprobs=False,
        response_format={"type": "text"},
        logit_bias={},
    )
    response = httpx.post(gateway + "/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text


def post_good_body_as(gateway: str, content_type: str) -> httpx.Response:
    """A good request's JSON bytes, sent under ``content_type``."""
    raw = httpx.Request("POST", gateway, json=GOOD).content
    return httpx.post(
        gateway + "/chat/completions", content=raw, headers={"content-type": content_type},
        timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_json_body_under_another_content_type_is_refused_naming_the_header(
    gateway: str, content_type: str
) -> None:
    # ``curl -d`` without ``-H 'Content-Type: application/json'`` sends the form type.
    response = post_good_body_as(gateway, content_type)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_content_type"
    assert "Content-Type: application/json" in error["message"]
    assert content_type in error["message"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/vnd.api+json", "APPLICATION/JSON"],
)
def test_json_content_types_with_parameters_or_suffixes_are_json(
    gateway: str, content_type: str
) -> None:
    response = post_good_body_as(gateway, content_type)
    assert response.status_code == 200, response.text


def test_a_json_value_that_is_not_an_object_is_named_so(gateway: str) -> None:
    for body in ([1, 2], "hello", 3):
        response = httpx.post(gateway + "/chat/completions", json=body, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["message"] == "The request body must be a JSON object.", error
        assert error["code"] == "invalid_json"
