"""A sketcher LoRA served by a real vLLM with the arguments ``pice up --sketch-lora`` builds.

One vLLM start (the 0.5B model, as in ``test_vllm.py``) with a random peft adapter made at test
time in the tune environment (``tests/support/random_lora.py``; B is random, so the adapter
changes what the model writes). vLLM must list the adapter under its name, answer with it,
and answer differently from the base model; a gateway in front of it names the adapter in the
outlined answer's ``pice`` object and sends everything else to the base model.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from pice.cloud.vllm import VllmServer
from pice_stack.sketch_lora import SKETCH_MODEL
from pice_stack.stack import StackSpec, cloud_lora_args
from tests.integration.conftest import running_gateway, running_vllm
from tests.support.processes import ServerProcess, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

TUNE_VENV_ENV = "PICE_TUNE_VENV"
PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Give me three tips for better sleep."}
]


@pytest.fixture(scope="module")
def adapter(vllm_spec: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random rank-8 peft adapter of the vLLM checkpoint (skips without a tune venv)."""
    venv = os.environ.get(TUNE_VENV_ENV)
    if not venv or not (Path(venv) / "bin" / "python").exists():
        pytest.skip(f"{TUNE_VENV_ENV} is not set to a tune environment (`make tune-env`)")
    out = tmp_path_factory.mktemp("lora") / "adapter"
    script = Path(__file__).parents[1] / "support" / "random_lora.py"
    argv = [str(Path(venv) / "bin" / "python"), str(script), str(vllm_spec.model_dir), str(out)]
    subprocess.run(argv, check=True, timeout=600, capture_output=True)
    return out


@pytest.fixture(scope="module")
def lora_vllm(
    vllm_spec: VllmServer, adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """vLLM with the sketcher, started with exactly the arguments ``pice up`` adds."""
    lora_args = cloud_lora_args(StackSpec(cloud="vllm", sketch_lora=adapter))
    # Its own port: the session's plain vLLM (test_vllm.py) may be running beside it.
    spec = replace(vllm_spec, port=free_port(), extra_args=(*vllm_spec.extra_args, *lora_args))
    with running_vllm(spec, tmp_path_factory.mktemp("vllm-lora")):
        yield spec


def greedy(client: OpenAI, model: str) -> str:
    completion = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=24, temperature=0, timeout=300
    )
    return completion.choices[0].message.content or ""


def test_vllm_serves_the_sketcher_beside_the_base_model(lora_vllm: VllmServer) -> None:
    client = OpenAI(base_url=lora_vllm.openai_base_url, api_key="unused", max_retries=0)
    listed = {model.id for model in client.models.list()}
    assert listed == {lora_vllm.served_model_name, SKETCH_MODEL}

    tuned, base = greedy(client, SKETCH_MODEL), greedy(client, lora_vllm.served_model_name)
    assert tuned.strip()
    # A LoRA with a non-zero B changes the weights, so greedy decoding takes another path.
    assert tuned != base


@pytest.fixture(scope="module")
def lora_gateway(
    lora_vllm: VllmServer, tmp_path_factory: pytest.TempPathFactory, adapter: Path
) -> Iterator[ServerProcess]:
    """A gateway as ``pice up --cloud vllm --sketch-lora`` configures it, with no edge up: the
    cloud expands every point itself, with the base model (no edge agent to start)."""
    with running_gateway(
        StackSpec(cloud="vllm", gateway_port=free_port(), sketch_lora=adapter),
        lora_vllm,
        [f"http://127.0.0.1:{free_port()}"],
        tmp_path_factory.mktemp("lora-gateway"),
        # /ready wants an edge up; this gateway has none on purpose.
        ready_path="/health",
    ) as server:
        yield server


def test_the_gateway_sketches_with_the_sketcher(lora_gateway: ServerProcess) -> None:
    # The readiness check reads vLLM's model list and finds the adapter there.
    ready = httpx.get(lora_gateway.base_url + "/ready", timeout=30).json()
    assert ready["cloud"] == {"up": True}
    assert ready["missing"] == ["edge"]

    client = OpenAI(base_url=f"{lora_gateway.base_url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="pice-progressive", messages=PROMPT, max_tokens=120, timeout=900
    )
    report = (completion.model_extra or {})["pice"]
    assert report["sketch"] == {
        "model": SKETCH_MODEL,
        "frame": False,
        "opening": False,
        "closing": False,
    }
    assert (completion.choices[0].message.content or "").strip()
    assert report["cloud_usage"]["completion_tokens"] > 0
