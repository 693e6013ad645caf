"""A real vLLM as the cloud: two real edge agents and the gateway around it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from openai import OpenAI

from pice.cloud.vllm import VllmServer
from pice_stack.stack import StackSpec
from tests.integration.conftest import running_gateway, two_cores
from tests.support.processes import ServerProcess, free_port, pice_argv, pinned
from tests.support.tools import WEATHER_QUESTION, WEATHER_TOOL

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

EDGE_MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    logs = tmp_path_factory.mktemp("edges")
    servers: list[ServerProcess] = []
    try:
        for i in range(2):
            port = free_port()
            argv = pice_argv(
                "edge", "serve", "--model", EDGE_MODEL, "--port", str(port), "--threads", "1"
            )
            server = ServerProcess(
                argv=pinned(argv, "1" if two_cores() else None),
                port=port,
                log_path=logs / f"edge-{i + 1}.log",
            )
            servers.append(server.start(timeout=180))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def gateway(
    vllm_spec: VllmServer,
    vllm_server: ServerProcess,
    edges: list[ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    with running_gateway(
        StackSpec(gateway_port=free_port()),
        vllm_spec,
        [edge.base_url for edge in edges],
        tmp_path_factory.mktemp("gateway"),
        ready_path="/ready",
    ) as server:
        yield server


def test_vllm_answers_a_direct_chat_completion(
    vllm_spec: VllmServer, vllm_server: ServerProcess
) -> None:
    client = OpenAI(base_url=vllm_spec.openai_base_url, api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model=vllm_spec.served_model_name,
        messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=8,
        temperature=0,
        timeout=120,
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


def test_progressive_request_with_vllm_cloud(gateway: ServerProcess) -> None:
    client = OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="pice-progressive",
        messages=[{"role": "user", "content": "Give me three tips for better sleep."}],
        max_tokens=200,
        timeout=600,
    )
    answer = completion.choices[0].message.content or ""
    points = re.findall(r"^\s*\d+\.", answer, flags=re.MULTILINE)
    assert len(points) >= 2, answer

    report = (completion.model_extra or {})["pice"]
    assert report["mode"] == "progressive"
    edge_names = {point["edge"] for point in report["points"]}
    assert edge_names & {"edge-1", "edge-2"}, report
    assert report["cloud_usage"]["completion_tokens"] > 0
    assert report["edge_usage"]["completion_tokens"] > 0
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        report["cloud_usage"]["total_tokens"] + report["edge_usage"]["total_tokens"]
    )


def ask_weather(gateway: ServerProcess, tool_choice: Literal["auto", "required"]) -> Any:
    client = OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="pice",
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        max_tokens=60,
        temperature=0,
        timeout=600,
    )
    report = (completion.model_extra or {})["pice"]
    assert (report["mode"], report["reason"]) == ("cloud", "unsupported:tools")
    return completion.choices[0]


def test_tools_reach_vllm_through_pice_and_come_back_as_tool_calls(
    gateway: ServerProcess,
) -> None:
    choice = ask_weather(gateway, "required")
    calls = choice.message.tool_calls or []
    assert [call.function.name for call in calls] == ["get_weather"], choice.message
    assert "city" in json.loads(calls[0].function.arguments)


def test_tool_choice_auto_is_accepted(gateway: ServerProcess) -> None:
    # vLLM refuses "auto" (the SDK's default when tools are given) with a 400 unless it runs
    # with --enable-auto-tool-choice. Whether the model calls the tool is the model's: the
    # 0.5B writes the call's JSON without Hermes's <tool_call> tags, which vLLM's parser
    # leaves as text (the embedded engine's parser takes it: docs/edge-api.md).
    choice = ask_weather(gateway, "auto")
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"] or "get_weather" in (
        choice.message.content or ""
    ), choice.message


def test_a_streamed_cloud_answer_without_include_usage_reports_the_clouds_tokens(
    gateway: ServerProcess,
) -> None:
    client = OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="pice-cloud",
            messages=[{"role": "user", "content": "Name three primary colours."}],
            max_tokens=40,
            temperature=0,
            stream=True,
            timeout=600,
        )
    )
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    report = (chunks[-1].model_extra or {})["pice"]
    usage = report["cloud_usage"]
    assert usage["prompt_tokens"] > 0, report
    assert 0 < usage["completion_tokens"] <= 40, report
    assert len(text.split()) <= usage["completion_tokens"] * 2, (text, report)
