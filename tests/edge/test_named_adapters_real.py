"""Named adapters on the real 0.5B edge model: a real LoRA GGUF served as its own model.

The adapter is made here in about half a minute: a peft LoRA with random, non-zero A and B over
the model's Hugging Face checkpoint (``tests/support/random_lora.py``, in ``.venv-tune``),
exported by ``pice_tune/worker.py export`` as ``pice tune export`` does. A stock agent answers
a few questions greedily; then an agent with ``--lora-module tuned=ADAPTER`` answers them for
``model: tuned`` (other text: the adapter works), for the base model (the stock agent's text:
nothing of the adapter leaks into the base model's decodes or its cached prefixes), and for both
at once, in one batch of work (still the same texts: the groups decode apart).
A module that does not load keeps the agent unready, its ``/ready`` naming the file. Making
the adapter needs ``.venv-tune`` (``make tune-env``; or ``PICE_TUNE_VENV``): skipped without it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice.models.registry import resolve_model
from tests.support.lora_gguf import random_lora_gguf
from tests.support.processes import ServerProcess, free_port, pice_argv, running

pytestmark = pytest.mark.model

EDGE_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
READY_TIMEOUT_S = 600.0
QUESTIONS = ("Name three colours of the rainbow.", "What is a prime number?")
MAX_TOKENS = 24
MODELS = ("tuned", "edge")
# Strong enough to change greedy answers, mild enough that they stay far from ties (a batch of
# other shape may round a near-tie the other way: that is float arithmetic, not a leak).
SCALE = 0.5


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_lora_gguf(EDGE_MODEL, tmp_path_factory.mktemp("lora"), "tuned")


def edge(tmp: Path, *extra: str) -> ServerProcess:
    port = free_port()
    argv = pice_argv(
        "edge", "serve", "--model", EDGE_MODEL, "--model-id", "edge", "--port", str(port),
        "--threads", "2", "--ctx", "2048", "--max-seqs", "4", *extra,
    )  # fmt: skip
    return ServerProcess(argv=argv, port=port, log_path=tmp / f"edge-{port}.log")


def ask(url: str, model: str, question: str) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=300.0)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == model
    text: str = reply.json()["choices"][0]["message"]["content"]
    return text


def test_a_module_answers_differently_and_the_base_model_as_a_stock_agent(
    adapter: Path, tmp_path: Path
) -> None:
    # Generous start-up: loading and warming up took ~1 min per agent on a busy 2-core machine.
    with running(edge(tmp_path), timeout=READY_TIMEOUT_S) as stock:
        stock_texts = [ask(stock.base_url, "edge", q) for q in QUESTIONS]
    module = f"tuned={adapter}:{SCALE}"
    with running(edge(tmp_path, "--lora-module", module), timeout=READY_TIMEOUT_S) as agent:
        url = agent.base_url
        models = httpx.get(url + "/v1/models").json()["data"]
        # The adapter first: its prefixes are cached under it, and must not serve the base.
        first_tuned = [ask(url, "tuned", q) for q in QUESTIONS]
        base_texts = [ask(url, "edge", q) for q in QUESTIONS]
        # Asked again, the adapter's prompts start from its own cached prefix, as they do below.
        tuned_texts = [ask(url, "tuned", q) for q in QUESTIONS]
        together = []
        with ThreadPoolExecutor(2) as pool:
            for q in QUESTIONS:  # both models at once: two groups, one step each turn
                together.append(list(pool.map(lambda model, q=q: ask(url, model, q), MODELS)))
        load = httpx.get(url + "/v1/load").json()
    assert [m["id"] for m in models] == ["edge", "tuned"]
    assert models[1]["parent"] == "edge"
    assert models[1]["adapter"]["name"] == "tuned"
    assert all(t.strip() for t in stock_texts + tuned_texts)
    assert first_tuned != stock_texts  # the adapter changes the answers
    assert base_texts == stock_texts  # and nothing of it reaches the base model
    assert together == [list(pair) for pair in zip(tuned_texts, base_texts, strict=True)]
    assert load["jobs"] == 5 * len(QUESTIONS)
    assert load["prefix_cache_hits"] >= 3 * len(QUESTIONS)


def test_a_module_that_does_not_load_keeps_the_agent_unready(tmp_path: Path) -> None:
    not_an_adapter = tmp_path / "broken.gguf"
    not_an_adapter.write_bytes(b"GGUF but nothing else")
    server = edge(tmp_path, "--lora-module", f"broken={not_an_adapter}")
    server.ready_path = "/health"
    with running(server, timeout=READY_TIMEOUT_S) as agent:
        for _ in range(int(READY_TIMEOUT_S / 0.5)):
            ready = httpx.get(agent.base_url + "/ready")
            if "could not" in ready.text:
                break
            time.sleep(0.5)
    assert ready.status_code == 503
    assert "broken.gguf" in ready.json()["error"]["message"]


def test_lora_and_a_module_together_apply_both(adapter: Path) -> None:
    """``--lora`` stays under a module's decodes: the context applies both (llama.cpp keys its
    adapter set by the loaded adapter, so the engine loads each setting's file on its own)."""
    import numpy as np

    from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel, TokenBatch

    model = LlamaModel(resolve_model(EDGE_MODEL, progress=False).path)
    tokens = model.tokenize(QUESTIONS[0], add_special=True, parse_special=False)

    def last_logits(always: bool, module: bool) -> Any:
        ctx = LlamaContext(model, ContextConfig(256, 256, 1, 1))
        batch = TokenBatch(256, 1)
        try:
            if always:
                ctx.set_adapter(model.load_adapter(adapter), SCALE)
            if module:
                ctx.add_named_adapter("tuned", model.load_adapter(adapter), SCALE)
                ctx.use_adapter("tuned")
            for pos, token in enumerate(tokens):
                batch.add(token, pos, (0,), logits=pos == len(tokens) - 1)
            assert ctx.decode(batch) == 0
            return ctx.logits(len(tokens) - 1).copy()
        finally:
            batch.close()
            ctx.close()

    try:
        stock, lora, named, both = (
            last_logits(False, False),
            last_logits(True, False),
            last_logits(False, True),
            last_logits(True, True),
        )
    finally:
        model.close()
    assert np.abs(lora - stock).mean() > 0.1  # the adapter does something
    assert np.array_equal(named, lora)  # a module alone is the same adapter at the same scale
    assert np.abs(both - lora).mean() > 0.1  # and with --lora, both apply
