"""``pice up --sketch-lora --edge-lora`` end to end on the real models (issue #13).

The embedded stack (the 1.5B cloud, one 0.5B edge, the gateway) starts as ``pice up`` starts
it, with a random adapter GGUF for each model (``tests/support/lora_gguf.py``): the cloud
serves its adapter as ``pice-sketcher``, the edge applies its own to every decode. One
``pice-progressive`` answer must name the sketcher as its sketch model and the edge's adapter
on every point the edge expanded; ``pice-cloud`` must answer from the base model (the cloud's
own greedy answer for the base model, which the sketcher's differs from). Needs
``.venv-tune`` to make the adapters (``make tune-env``; or ``PICE_TUNE_VENV``): skipped
without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice_stack.cli import edge_adapter_summary
from pice_stack.sketch_lora import SKETCH_MODEL
from pice_stack.stack import RunningStack, StackSpec, launch_stack
from tests.support.lora_gguf import random_lora_gguf
from tests.support.processes import free_port

pytestmark = pytest.mark.model

CLOUD_MODEL = "qwen2.5-coder-1.5b-instruct"
EDGE_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
EDGE_ADAPTER = "tuned-edge"
QUESTION = "What are good ways to deal with stress?"
# B shrunk so the sketcher still writes a numbered outline, only another one.
SKETCHER_B_SCALE = 0.3


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the cloud's sketcher GGUF, the edge's adapter GGUF)."""
    work = tmp_path_factory.mktemp("loras")
    sketcher = random_lora_gguf(CLOUD_MODEL, work, "sketcher", b_scale=SKETCHER_B_SCALE)
    edge = random_lora_gguf(EDGE_MODEL, work, EDGE_ADAPTER)
    return sketcher, edge


@pytest.fixture(scope="module")
def stack(
    adapters: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    sketcher, edge = adapters
    spec = StackSpec(
        cloud_model=CLOUD_MODEL,
        edge_model=EDGE_MODEL,
        edges=1,
        gateway_port=free_port(),
        cloud_port=free_port(),
        edge_base_port=free_port(),
        run_dir=tmp_path_factory.mktemp("run"),
        sketch_lora=sketcher,
        edge_lora=edge,
        edge_lora_scale=0.5,
    )
    with launch_stack(spec) as running:
        yield running


def chat(url: str, model: str, max_tokens: int, key: str | None = None) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=400.0)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def test_the_sketcher_sketches_and_every_edge_point_names_the_edge_adapter(
    stack: RunningStack, adapters: tuple[Path, Path]
) -> None:
    assert stack.gateway_url is not None
    summary = edge_adapter_summary(stack.spec)
    assert summary == f"lora: {EDGE_ADAPTER} = {adapters[1]}, scale 0.5"

    answer = chat(stack.gateway_url + "/v1", "pice-progressive", max_tokens=64)
    report = answer["pice"]
    assert report["sketch"]["model"] == SKETCH_MODEL, report
    assert report["reason"] == "outline", report
    edge_points = [p for p in report["points"] if p["edge"] not in (None, "cloud")]
    assert edge_points, report  # one edge, up: it expanded points
    assert [p["adapter"] for p in edge_points] == [EDGE_ADAPTER] * len(edge_points)
    assert answer["choices"][0]["message"]["content"].strip()

    # The edge itself says so, with the scale the stack gave it.
    load = httpx.get(
        stack.edge_urls[0] + "/v1/load",
        headers={"Authorization": f"Bearer {stack.edge_api_key}"},
        timeout=10.0,
    ).json()
    assert load["adapter"]["name"] == EDGE_ADAPTER
    assert load["adapter"]["scale"] == 0.5


def test_pice_cloud_answers_from_the_base_model(stack: RunningStack) -> None:
    assert stack.gateway_url is not None
    key = stack.cloud_api_key
    base = chat(stack.cloud_base_url, stack.cloud_model, max_tokens=16, key=key)
    tuned = chat(stack.cloud_base_url, SKETCH_MODEL, max_tokens=16, key=key)
    base_text = base["choices"][0]["message"]["content"]
    # Otherwise the comparison below could not tell the two apart.
    assert tuned["choices"][0]["message"]["content"] != base_text

    answer = chat(stack.gateway_url + "/v1", "pice-cloud", max_tokens=16)
    assert answer["model"] == "pice-cloud"
    assert answer["pice"]["sketch"] is None
    assert answer["pice"]["points"] == []
    assert answer["choices"][0]["message"]["content"] == base_text
