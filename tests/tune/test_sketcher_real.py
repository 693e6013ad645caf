"""The sketcher end to end at toy size on the real bundled 1.5B cloud model.

A scripted teacher (a real HTTP server speaking the OpenAI chat API, honouring ``n``) stands
in for the cloud; ``pice tune data/train/export --role sketcher`` then trains (1 step, rank 4,
128 tokens) and exports for real in the tuning environment, and llama.cpp loads the adapter
for the 1.5B model, refuses it for the 0.5B, and sketches differently with it. The same run
with ``--frame`` (the framed prompt, the default the gateway asks the stock cloud for) records
the frame through train and export, the stack reads it and the gateway asks that adapter for
the framed sketch, and llama.cpp's framed sketch changes with it.
Needs ``.venv-tune`` (``make tune-env``; or ``PICE_TUNE_VENV``): skipped without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model
from pice.openai_protocol import ChatCompletionRequest, ChatMessage
from pice_cli.main import main as pice_main
from pice_gateway.progressive.sketch import (
    SKETCH_SYSTEM_FRAMED,
    SKETCH_SYSTEM_OUTLINE,
    sketch_messages,
)
from pice_gateway.progressive.spec import sketch_frame
from pice_gateway.settings import GatewaySettings
from pice_stack.sketch_lora import SKETCH_MODEL, sketch_lora_framed
from pice_stack.stack import StackSpec, gateway_config
from pice_tune.distill import FRAMED_MAX_TOKENS
from tests.gateway.fakes import serve
from tests.tune.test_pipeline_real import tune_venv

pytestmark = pytest.mark.model

CLOUD_MODEL = "qwen2.5-coder-1.5b-instruct"
EDGE_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
QUESTION = "How do I keep a plant alive on holiday?"
# Greedy first, then the sampled ones (the scripted teacher hands them out in order).
SKETCHES = [
    "1. Water deeply\n2. Less sun\n3. Humidity tray\n4. Ask a neighbour",
    "1. Water deeply\n2. Less sun\n3. Humidity tray",
    "1. Soak the soil\n2. Shade\n3. Humidity tray\n4. Group the pots",
    "1. Water deeply\n2. Less sun",
]
OPENING = "A plant left alone needs water, shade and moist air:"
CLOSING = "Set up the day before you leave and it will wait for you."
LIST = "1. Water deeply\n2. Less sun\n3. Humidity tray"
FRAMED_SKETCHES = [
    f"{OPENING}\n{LIST}",  # greedy: no closing
    f"{OPENING}\n{LIST}\n{CLOSING}",
    f"{LIST}\n{CLOSING}",  # no opening
    f"{OPENING}\nWater it deeply and move it out of the sun.",  # prose
]


def scripted_teacher(system: str, sketches: list[str], max_tokens: int | None = None) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        assert body["messages"][0]["content"] == system
        if max_tokens is not None:
            assert body["max_tokens"] == max_tokens
        first = 0 if body["temperature"] == 0 else 1
        texts = sketches[first : first + int(body.get("n", 1))]
        return {
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for i, text in enumerate(texts)
            ]
        }

    return app


def run_sketcher(work: Path, *, frame: bool) -> Path:
    """``pice tune data/train/export --role sketcher`` (``--frame`` if ``frame``) in ``work``
    against the scripted teacher; the exported sketcher-adapter.gguf."""
    venv = tune_venv()
    questions = work / "questions.jsonl"
    rows = [
        {"id": "q1", "category": "generic", "question": QUESTION},
        {"id": "q2", "category": "generic", "question": "How can my fern survive two weeks?"},
        {"id": "q3", "category": "generic", "question": "Never asked: held out", "split": "dev"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["tune", "--workdir", str(work)]
    teacher = (
        scripted_teacher(SKETCH_SYSTEM_FRAMED, FRAMED_SKETCHES, FRAMED_MAX_TOKENS)
        if frame
        else scripted_teacher(SKETCH_SYSTEM_OUTLINE, SKETCHES)
    )
    with serve(teacher) as url:
        assert pice_main(
            [*common, "data", "--role", "sketcher", "--questions", str(questions),
             "--cloud-url", url + "/v1", "--cloud-model", "teacher",
             *(["--frame"] if frame else [])]
        ) == 0  # fmt: skip
    assert pice_main(
        [*common, "train", "--role", "sketcher", "--venv", str(venv), "--max-steps", "1",
         "--rank", "4", "--alpha", "16", "--lr", "5e-3", "--seq-len", "128",
         "--batch-size", "2", "--dropout", "0", "--targets", "q_proj,v_proj,o_proj,down_proj",
         "--save-every", "1", "--threads", "2"]
    ) == 0  # fmt: skip
    assert pice_main([*common, "export", "--role", "sketcher", "--venv", str(venv)]) == 0
    return work / "sketcher-adapter.gguf"


@pytest.fixture(scope="module")
def sketcher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(workdir, sketcher-adapter.gguf) after data, train and export through the CLI."""
    work = tmp_path_factory.mktemp("sketcher")
    return work, run_sketcher(work, frame=False)


@pytest.fixture(scope="module")
def framed_sketcher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same with ``--frame``."""
    work = tmp_path_factory.mktemp("framed-sketcher")
    return work, run_sketcher(work, frame=True)


def gateway_frames(adapter: Path) -> bool:
    """Whether ``pice up --sketch-lora adapter``'s gateway asks the sketcher for a frame."""
    config = gateway_config(StackSpec(sketch_lora=adapter), "http://c/v1", "base", ["http://e"])
    settings = GatewaySettings.model_validate(config)
    assert settings.cloud.sketch_model == SKETCH_MODEL
    request = ChatCompletionRequest.model_validate(
        {"model": "pice-progressive", "messages": [{"role": "user", "content": QUESTION}]}
    )
    return sketch_frame(settings, request, allow_direct=False)


def test_the_sketcher_run_is_recorded_apart_from_the_expanders(
    sketcher: tuple[Path, Path],
) -> None:
    work, adapter = sketcher
    manifest = json.loads((work / "sketch-v1.jsonl.manifest.json").read_text())
    assert manifest["role"] == "sketcher"
    assert manifest["examples"] == 2  # the dev question is never asked
    lines = (work / "sketch-v1.jsonl").read_text().splitlines()
    # The complete, focused, brief sample wins over the greedy one (which pads a 4th point).
    assert {tuple(json.loads(line)["points"]) for line in lines} == {
        ("Water deeply", "Less sun", "Humidity tray")
    }
    assert not (work / "run").exists()
    assert not (work / "data-v1.jsonl").exists()
    meta = json.loads(adapter.with_name("sketcher-adapter.gguf.json").read_text())
    assert meta["checked_against"]["model"] == CLOUD_MODEL
    assert meta["recipe"]["base_model"] == CLOUD_MODEL
    assert meta["data_sha256"] == manifest["data_sha256"]
    assert meta["training"]["steps"] == 1
    # The peft directory vLLM's --lora-modules takes as it is.
    peft = Path(meta["peft_dir"])
    assert peft == (work / "run-sketcher" / "adapter").absolute()
    config = json.loads((peft / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 16.0)
    assert (peft / "adapter_model.safetensors").is_file()
    record = json.loads((work / "run-sketcher" / "train.jsonl").read_text().splitlines()[0])
    assert record["end_turn"] is True
    assert record["completion"] == "1. Water deeply\n2. Less sun\n3. Humidity tray"
    # Learnt unframed: the gateway asks this adapter for the outline alone.
    assert "frame" not in manifest["sampling"] or manifest["sampling"]["frame"] is False
    assert meta.get("frame") is not True
    assert not sketch_lora_framed(adapter)
    assert not gateway_frames(adapter)


def test_a_framed_sketcher_keeps_its_frame_from_data_to_the_gateway(
    framed_sketcher: tuple[Path, Path],
) -> None:
    work, adapter = framed_sketcher
    manifest = json.loads((work / "sketch-v1.jsonl.manifest.json").read_text())
    assert manifest["examples"] == 2
    assert manifest["sampling"]["frame"] is True
    # Per question: the greedy sample has no closing, one none of its opening, one is prose.
    assert manifest["dropped"] == {"no_closing": 2, "no_opening": 2, "not_outline": 2}
    records = [json.loads(line) for line in (work / "sketch-v1.jsonl").read_text().splitlines()]
    assert {(r["opening"], tuple(r["points"]), r["closing"]) for r in records} == {
        (OPENING, ("Water deeply", "Less sun", "Humidity tray"), CLOSING)
    }
    # What the model learns to write: the opening line, the list, the closing, end of turn.
    train = json.loads((work / "run-sketcher" / "train.jsonl").read_text().splitlines()[0])
    assert train["messages"][0]["content"] == SKETCH_SYSTEM_FRAMED
    assert train["completion"] == f"{OPENING}\n{LIST}\n{CLOSING}"
    assert train["end_turn"] is True
    # Recorded by train (recipe.json beside run/adapter) and export (beside the GGUF) ...
    recipe = json.loads((work / "run-sketcher" / "recipe.json").read_text())
    assert recipe["frame"] is True
    meta = json.loads(adapter.with_name("sketcher-adapter.gguf.json").read_text())
    assert meta["frame"] is True
    # ... and read by the stack for either cloud, so the gateway asks it for the frame.
    assert sketch_lora_framed(adapter)
    assert sketch_lora_framed(Path(meta["peft_dir"]))
    assert gateway_frames(adapter)


def greedy_sketch(
    model: Any, adapter: Any, max_tokens: int = 12, *, frame: bool = False
) -> tuple[str, float]:
    """llama.cpp's greedy sketch of ``QUESTION`` (the gateway's outline prompt, framed if
    ``frame``) and the sum of the chosen tokens' log-probabilities, with ``adapter`` (loaded)
    applied if given."""
    import numpy as np

    from edge_agent.engine.chat_template import ChatRenderer, Message
    from edge_agent.engine.llama import ContextConfig, LlamaContext, TokenBatch

    ctx = LlamaContext(model, ContextConfig(384, 384, 1, 2))
    batch = TokenBatch(384, 1)
    try:
        if adapter is not None:
            ctx.set_adapter(adapter, 1.0)
        messages = sketch_messages(
            [ChatMessage(role="user", content=QUESTION)], allow_direct=False, frame=frame
        )
        prompt = ChatRenderer.from_model(model).render(
            [Message(m["role"], m["content"]) for m in messages]
        )
        tokens = model.tokenize(prompt.text, add_special=prompt.add_special, parse_special=True)
        for pos, token in enumerate(tokens):
            batch.add(token, pos, (0,), logits=pos == len(tokens) - 1)
        assert ctx.decode(batch) == 0
        row, pos, text, logprob = len(tokens) - 1, len(tokens), b"", 0.0
        for _ in range(max_tokens):
            logits = ctx.logits(row).astype(np.float64)
            token = int(np.argmax(logits))
            top = logits.max()
            logprob += float(logits[token] - top - math.log(np.exp(logits - top).sum()))
            if model.is_eog(token):
                break
            text += model.piece(token)
            batch.clear()
            row = batch.add(token, pos, (0,), logits=True)
            pos += 1
            assert ctx.decode(batch) == 0
        return text.decode(errors="replace"), logprob
    finally:
        batch.close()
        ctx.close()


def assert_sketches_differently(adapter: Path, *, frame: bool) -> None:
    """One load of the cloud model, two contexts: its greedy sketch stock, and with the
    adapter, which must write another sketch or the same with other probabilities."""
    from edge_agent.engine.llama import LlamaModel

    cloud = LlamaModel(resolve_model(CLOUD_MODEL, pull=False).path)
    try:
        stock_text, stock_logprob = greedy_sketch(cloud, None, frame=frame)
        loaded = cloud.load_adapter(adapter)
        assert loaded.meta("adapter.type") == "lora"
        text, logprob = greedy_sketch(cloud, loaded, frame=frame)
    finally:
        cloud.close()
    assert stock_text.strip()
    assert text.strip()
    assert text != stock_text or abs(logprob - stock_logprob) > 1e-3


def test_llama_cpp_loads_it_for_the_cloud_model_only_and_it_sketches_differently(
    sketcher: tuple[Path, Path],
) -> None:
    from edge_agent.engine.llama import LlamaModel

    _, adapter = sketcher
    edge = LlamaModel(resolve_model(EDGE_MODEL, pull=False).path)
    try:
        # The 0.5B edge model has other shapes: llama.cpp's loader checks them and refuses.
        with pytest.raises(ModelProvisioningError, match="could not load the LoRA"):
            edge.load_adapter(adapter)
    finally:
        edge.close()
    assert_sketches_differently(adapter, frame=False)


def test_llama_cpp_writes_another_framed_sketch_with_the_framed_sketcher(
    framed_sketcher: tuple[Path, Path],
) -> None:
    assert_sketches_differently(framed_sketcher[1], frame=True)
