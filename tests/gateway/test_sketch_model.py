"""``cloud.sketch_model``: the outline-only sketch names a sketcher adapter, nothing else does.

A sketcher LoRA (issue #13) is served by the cloud beside its base model under its own name;
only the sketch that must outline is trained for it, so direct answers, ``pice-cloud`` and the
cloud's own expansions of points keep ``cloud.model``. ``/ready`` fails, naming the adapter,
when the cloud does not list it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pice.openai_protocol import ChatCompletionRequest
from pice_gateway.progressive.spec import request_budget, sketch_frame, sketch_payload
from pice_gateway.readiness import unlisted_models
from pice_gateway.settings import CloudSettings, GatewaySettings
from tests.gateway.conftest import fake_stack, openai_client
from tests.gateway.fakes import CloudScript, EdgeScript, _kind
from tests.support.processes import free_port

# The sketch report's frame fields when no frame was asked for (a sketcher adapter: off).
UNFRAMED = {"frame": False, "opening": False, "closing": False}

SKETCHER = {"sketch_model": "pice-sketcher"}


def question(model: str = "pice-progressive") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "How to stay healthy?"}]}


def models_by_kind(cloud: CloudScript) -> list[tuple[str, str]]:
    return [(_kind(body), body["model"]) for body in cloud.requests]


@pytest.mark.parametrize(
    ("sketch_model", "allow_direct", "expected"),
    [
        ("pice-sketcher", False, "pice-sketcher"),
        # The in-band decision of ``pice`` without a router may become the direct answer.
        ("pice-sketcher", True, "base"),
        (None, False, "base"),
    ],
)
def test_the_sketch_payload_names_the_sketch_model_only_when_it_must_outline(
    sketch_model: str | None, allow_direct: bool, expected: str
) -> None:
    settings = GatewaySettings(cloud={"model": "base", "sketch_model": sketch_model})
    request = ChatCompletionRequest.model_validate(question())
    budget = request_budget(settings, request)
    payload = sketch_payload(
        settings, request, allow_direct=allow_direct, frame=False, budget=budget
    )
    assert payload["model"] == expected


@pytest.mark.parametrize(
    ("sketch_model", "setting", "asked", "allow_direct", "framed", "sketch_framed"),
    [
        (None, None, None, False, True, False),  # the default: framed
        ("pice-sketcher", None, None, False, False, False),  # the adapter learnt bare outlines
        ("pice-sketcher", None, None, False, True, True),  # ... or learnt the framed sketch
        ("pice-sketcher", False, None, False, False, True),  # the operator's setting wins
        ("pice-sketcher", True, None, False, True, False),
        (None, False, None, False, False, False),
        (None, False, True, False, True, False),  # the request's pice.frame wins over both
        ("pice-sketcher", None, True, False, True, False),
        ("pice-sketcher", None, False, False, False, True),
        (None, None, False, False, False, False),
        (None, True, True, True, False, False),  # a sketch that may answer directly: unframed
    ],
)
def test_the_frame_is_on_unless_a_sketcher_adapter_writes_the_bare_outline(
    sketch_model: str | None,
    setting: bool | None,
    asked: bool | None,
    allow_direct: bool,
    framed: bool,
    sketch_framed: bool,
) -> None:
    settings = GatewaySettings(
        cloud={"model": "base", "sketch_model": sketch_model, "sketch_framed": sketch_framed},
        progressive={"frame": setting},
    )
    body = question() | ({} if asked is None else {"pice": {"frame": asked}})
    request = ChatCompletionRequest.model_validate(body)
    assert sketch_frame(settings, request, allow_direct=allow_direct) is framed


def test_only_a_sketch_model_that_differs_is_an_extra_model_to_check() -> None:
    assert CloudSettings(model="base").extra_models() == ()
    assert CloudSettings(model="base", sketch_model="base").extra_models() == ()
    assert CloudSettings(model="base", sketch_model="s").extra_models() == ("s",)
    assert CloudSettings(model="base", sketch_model="s").outline_model == "s"


def test_the_sketch_model_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICE_CLOUD__SKETCH_MODEL", "pice-sketcher")
    assert GatewaySettings().cloud.outline_model == "pice-sketcher"


@pytest.mark.timeout(30)
def test_an_outline_names_the_sketch_model_and_points_keep_the_cloud_model() -> None:
    # No edge up: the cloud expands every point itself, with the base model.
    cloud = CloudScript(models=("cloud-model", "pice-sketcher"))
    dead = {"dead": f"http://127.0.0.1:{free_port()}"}
    with fake_stack(cloud, [], extra_edges=dead, cloud_settings=SKETCHER) as url:
        completion = openai_client(url).chat.completions.create(**question())
    report = (completion.model_extra or {})["pice"]
    assert report["sketch"] == {"model": "pice-sketcher", **UNFRAMED}
    assert [p["edge"] for p in report["points"]] == ["cloud"] * 3
    assert (
        models_by_kind(cloud) == [("sketch", "pice-sketcher")] + [("expansion", "cloud-model")] * 3
    )


@pytest.mark.timeout(30)
def test_a_streamed_outline_names_the_sketch_model_in_its_last_chunk() -> None:
    cloud = CloudScript(models=("cloud-model", "pice-sketcher"))
    with fake_stack(cloud, [EdgeScript("good")], cloud_settings=SKETCHER) as url:
        stream = openai_client(url).chat.completions.create(**question(), stream=True)
        last = list(stream)[-1]
    assert (last.model_extra or {})["pice"]["sketch"] == {"model": "pice-sketcher", **UNFRAMED}
    assert models_by_kind(cloud) == [("sketch", "pice-sketcher")]


@pytest.mark.timeout(30)
def test_the_cloud_path_and_the_in_band_decision_keep_the_cloud_model() -> None:
    cloud = CloudScript(models=("cloud-model", "pice-sketcher"))
    with fake_stack(cloud, [EdgeScript("good")], cloud_settings=SKETCHER) as url:
        client = openai_client(url)
        direct = client.chat.completions.create(**question("pice-cloud"))
        in_band = client.chat.completions.create(**question("pice"))
    assert (direct.model_extra or {})["pice"]["sketch"] is None
    assert (in_band.model_extra or {})["pice"]["sketch"] == {"model": "cloud-model", **UNFRAMED}
    assert models_by_kind(cloud) == [("answer", "cloud-model"), ("sketch", "cloud-model")]


def ready(url: str) -> httpx.Response:
    return httpx.get(url.removesuffix("/v1") + "/ready", timeout=10)


@pytest.mark.timeout(30)
def test_ready_when_the_cloud_lists_the_sketch_model() -> None:
    cloud = CloudScript(models=("cloud-model", "pice-sketcher"))
    with fake_stack(cloud, [EdgeScript("good")], cloud_settings=SKETCHER) as url:
        response = ready(url)
    assert response.status_code == 200
    assert response.json()["cloud"] == {"up": True}


@pytest.mark.timeout(30)
def test_not_ready_when_the_cloud_does_not_serve_the_sketch_model() -> None:
    # A vLLM started without its --lora-modules: up, answering, but without the adapter.
    cloud = CloudScript(models=("cloud-model",))
    with fake_stack(cloud, [EdgeScript("good")], cloud_settings=SKETCHER) as url:
        response = ready(url)
    assert response.status_code == 503
    body = response.json()
    assert body["missing"] == ["cloud"]
    assert body["cloud"] == {
        "up": False,
        "problem": "cloud does not serve 'pice-sketcher' (cloud.sketch_model); "
        "it lists 'cloud-model'",
    }


def test_a_models_answer_that_is_not_a_model_list_is_reported() -> None:
    assert unlisted_models(b'{"data": [{"id": "a"}, {"id": "s"}]}', ("s",)) is None
    assert unlisted_models(b'{"data": []}', ("s",)) == (
        "cloud does not serve 's' (cloud.sketch_model); it lists nothing"
    )
    assert unlisted_models(b"<html>", ("s",)) == (
        "cloud answered GET /models with no OpenAI model list"
    )
