"""``pice tune`` end to end at toy size on the real bundled 0.5B model.

A scripted teacher (a real HTTP server speaking the OpenAI chat API) stands in for the cloud so
the data step costs nothing; training (3 steps, rank 4, 128 tokens) and export run for real in
the tuning environment, and the adapter is loaded by llama.cpp and served by a real edge agent.
Needs ``.venv-tune`` (``make tune-env``; or ``PICE_TUNE_VENV``): skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model
from pice_cli.main import main as pice_main
from pice_gateway.progressive.sketch import SKETCH_SYSTEM_OUTLINE
from pice_tune import worker
from pice_tune.steps import find_tune_venv
from tests.gateway.fakes import serve
from tests.support.logits import text_logits
from tests.support.processes import ServerProcess, free_port, pice_argv, running

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
EDGE_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
RANK, ALPHA = 4, 16.0
READY_TIMEOUT_S = 600.0
BODIES = [
    "Water the soil deeply the day before leaving, then group the pots together.",
    "Move plants out of direct sun so the soil dries more slowly.",
    "Stand pots on a tray of wet pebbles to keep the air around them humid.",
]


def tune_venv() -> Path:
    try:
        return find_tune_venv(Path(os.environ.get("PICE_TUNE_VENV", ROOT / ".venv-tune")))
    except ModelProvisioningError:
        pytest.skip("no tuning environment (make tune-env)")


def scripted_teacher() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body["messages"][0]["content"].startswith(SKETCH_SYSTEM_OUTLINE):
            text = "1. Water deeply\n2. Less sun\n3. Humidity tray"
        else:
            last = body["messages"][-1]["content"]
            text = BODIES[int(last.split("Write point ")[1].split(" ")[0]) - 1]
        message = {"role": "assistant", "content": text}
        return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

    return app


def write_questions(work: Path) -> Path:
    """Two training questions, written to ``work/questions.jsonl``."""
    questions = work / "questions.jsonl"
    rows = [
        {"id": "q1", "category": "generic", "question": "How do I keep a plant alive on holiday?"},
        {"id": "q2", "category": "generic", "question": "How can my fern survive two weeks alone?"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return questions


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(workdir, adapter.gguf) after data, train and export through the CLI."""
    venv = tune_venv()
    work = tmp_path_factory.mktemp("tune")
    questions = write_questions(work)
    with serve(scripted_teacher()) as url:
        assert pice_main(
            ["tune", "--workdir", str(work), "data", "--questions", str(questions),
             "--cloud-url", url + "/v1", "--cloud-model", "teacher"]
        ) == 0  # fmt: skip
    common = ["tune", "--workdir", str(work)]
    assert pice_main(
        [*common, "train", "--venv", str(venv), "--max-steps", "3", "--rank", str(RANK),
         "--alpha", str(ALPHA), "--lr", "5e-3", "--seq-len", "128", "--batch-size", "2",
         "--dropout", "0", "--targets", "q_proj,v_proj,o_proj,down_proj", "--save-every", "2",
         "--threads", "2", "--val-share", "0.5"]
    ) == 0  # fmt: skip
    assert pice_main([*common, "export", "--venv", str(venv), "--edge-model", EDGE_MODEL]) == 0
    return work, work / "adapter.gguf"


def inspect_gguf(path: Path) -> dict[str, Any]:
    argv = [str(tune_venv() / "bin" / "python"), worker.__file__, "inspect", str(path)]
    result: dict[str, Any] = json.loads(
        subprocess.run(argv, check=True, capture_output=True).stdout
    )
    return result


def test_the_run_records_data_recipe_and_checkpoints(tuned: tuple[Path, Path]) -> None:
    work, adapter = tuned
    manifest = json.loads((work / "data-v1.jsonl.manifest.json").read_text())
    assert manifest["examples"] == 6
    assert manifest["dropped"] == {}
    meta = json.loads(adapter.with_name("adapter.gguf.json").read_text())
    assert meta["data_sha256"] == manifest["data_sha256"]
    assert meta["recipe"]["rank"] == RANK
    assert meta["recipe"]["max_steps"] == 3
    assert meta["training"]["steps"] == 3
    assert len(meta["training"]["losses"]) == 3
    # Checkpoints every 2 steps; the last one (step 3) is kept for resuming.
    assert [p.name for p in (work / "run").glob("checkpoint-*")] == ["checkpoint-3"]
    # --val-share 0.5 held out one of the two questions (its 3 examples), scored at each
    # checkpoint; the adapter is the checkpoint where that loss was lowest.
    recorded = json.loads((work / "run" / "recipe.json").read_text())
    assert len(recorded["val_questions"]) == 1
    training = meta["training"]
    assert training["examples"] == 3
    assert training["val_examples"] == 3
    assert [step for step, _ in training["val_losses"]] == [2, 3]
    best_step, _ = min(training["val_losses"], key=lambda v: v[1])
    assert training["chosen_step"] == best_step
    for name in ("adapter", "adapter-best", "adapter-last"):
        assert (work / "run" / name / "adapter_model.safetensors").is_file()
    chosen = (work / "run" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert chosen == (work / "run" / "adapter-best" / "adapter_model.safetensors").read_bytes()


def test_training_resumes_from_its_checkpoint(
    tuned: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    work, _ = tuned
    train = ["tune", "--workdir", str(work), "train", "--venv", str(tune_venv())]
    recipe = ["--rank", str(RANK), "--alpha", str(ALPHA), "--lr", "5e-3", "--seq-len", "128",
              "--batch-size", "2", "--dropout", "0", "--targets", "q_proj,v_proj,o_proj,down_proj",
              "--save-every", "2", "--threads", "2", "--val-share", "0.5"]  # fmt: skip
    # Same recipe, one more step: continues at step 3 instead of starting over.
    assert pice_main([*train, "--max-steps", "4", *recipe]) == 0
    summary = json.loads((work / "run" / worker.SUMMARY_FILE).read_text())
    assert summary["resumed_from"] == "checkpoint-3"
    assert summary["steps"] == 4
    assert len(summary["losses"]) == 4
    # The validation losses of steps 2 and 3 came back with the checkpoint; step 4's was added.
    assert [step for step, _ in summary["val_losses"]] == [2, 3, 4]
    # Fewer steps than the run has are refused, not served from a later checkpoint.
    capfd.readouterr()
    assert pice_main([*train, "--max-steps", "3", *recipe]) == 1
    assert "failed" in capfd.readouterr().err
    assert json.loads((work / "run" / worker.SUMMARY_FILE).read_text()) == summary
    # Another recipe on the same run directory is refused rather than mixed in.
    assert pice_main(
        ["tune", "--workdir", str(work), "train", "--venv", str(tune_venv()),
         "--max-steps", "4", "--rank", "8", "--seq-len", "128"]
    ) == 1  # fmt: skip
    assert "another recipe" in capfd.readouterr().err


def test_adapter_tensors_match_the_base_models(tuned: tuple[Path, Path]) -> None:
    _, adapter = tuned
    lora = inspect_gguf(adapter)
    base = inspect_gguf(resolve_model(EDGE_MODEL, pull=False).path)
    meta = lora["metadata"]
    assert meta["general.type"] == "adapter"
    assert meta["general.architecture"] == base["metadata"]["general.architecture"] == "qwen2"
    assert meta["adapter.type"] == "lora"
    assert meta["adapter.lora.alpha"] == ALPHA
    n_layers = base["metadata"]["qwen2.block_count"]
    expected = {
        f"blk.{i}.{t}.weight"
        for i in range(n_layers)
        for t in ("attn_q", "attn_v", "attn_output", "ffn_down")
    }
    names = set(lora["tensors"])
    assert names == {f"{n}.lora_a" for n in expected} | {f"{n}.lora_b" for n in expected}
    for name in expected:
        n_in, n_out = base["tensors"][name][:2]  # GGUF order: innermost first
        assert lora["tensors"][name + ".lora_a"] == [n_in, RANK]
        assert lora["tensors"][name + ".lora_b"] == [RANK, n_out]


def test_llama_cpp_loads_it_for_its_base_and_refuses_another_model(
    tuned: tuple[Path, Path],
) -> None:
    from edge_agent.engine.llama import LlamaModel

    _, adapter = tuned
    model = LlamaModel(resolve_model(EDGE_MODEL, pull=False).path)
    try:
        loaded = model.load_adapter(adapter)
        assert loaded.meta("adapter.type") == "lora"
    finally:
        model.close()
    # The 1.5B model has other shapes: llama.cpp's loader checks them and refuses.
    other = LlamaModel(resolve_model("qwen2.5-coder-1.5b-instruct", pull=False).path)
    try:
        with pytest.raises(ModelProvisioningError, match="could not load the LoRA"):
            other.load_adapter(adapter)
    finally:
        other.close()


def expand(server: str) -> tuple[list[str], list[float], dict[str, Any], dict[str, Any]]:
    body = {
        "question": "How do I keep a plant alive on holiday?",
        "sketch": ["Water deeply", "Less sun"],
        "max_tokens": 24,
    }
    texts, logprobs = ["", ""], [0.0, 0.0]
    with httpx.stream("POST", server + "/v1/expand", json=body, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                event = json.loads(line[5:])
                if event["type"] == "point_done":
                    texts[event["point"]] = event["text"]
                    logprobs[event["point"]] = event["logprob_sum"]
    models = httpx.get(server + "/v1/models").json()
    load = httpx.get(server + "/v1/load").json()
    return texts, logprobs, models, load


def edge(tmp: Path, *extra: str) -> ServerProcess:
    port = free_port()
    argv = pice_argv(
        "edge", "serve", "--model", EDGE_MODEL, "--port", str(port), "--threads", "2",
        "--ctx", "1024", "--max-seqs", "2", "--prefix-cache", "0", *extra,
    )  # fmt: skip
    return ServerProcess(argv=argv, port=port, log_path=tmp / f"edge-{port}.log")


def test_the_edge_serves_the_adapter_and_its_output_changes(
    tuned: tuple[Path, Path], tmp_path: Path
) -> None:
    _, adapter = tuned
    # Generous start-up: loading and warming up took ~1 min per agent on a busy 2-core machine.
    with running(edge(tmp_path), timeout=READY_TIMEOUT_S) as stock:
        stock_texts, stock_logprobs, stock_models, stock_load = expand(stock.base_url)
    lora = edge(tmp_path, "--lora", str(adapter), "--lora-scale", "1.0")
    with running(lora, timeout=READY_TIMEOUT_S) as tuned_edge:
        texts, logprobs, models, load = expand(tuned_edge.base_url)
    assert stock_models["data"][0]["adapter"] is None
    assert stock_load["adapter"] is None
    sha = json.loads(adapter.with_name("adapter.gguf.json").read_text())["adapter_sha256"]
    expected = {"name": "adapter", "scale": 1.0, "sha256": sha, "merged": False}
    assert models["data"][0]["adapter"] == expected
    assert load["adapter"] == expected
    assert all(t.strip() for t in texts)
    # Greedy decoding either writes other text, or the same text with other probabilities.
    assert texts != stock_texts or logprobs != stock_logprobs


def test_the_merged_model_computes_what_the_adapter_does(
    tuned: tuple[Path, Path], tmp_path: Path
) -> None:
    """``export --merged`` folds the adapter into the weights: llama.cpp then computes with the
    plain merged model what it computes with the stock model and the adapter."""
    import numpy as np

    work, _ = tuned
    common = ["tune", "--workdir", str(work), "export", "--venv", str(tune_venv())]
    # The run may have been resumed by another test: export both from its current state.
    adapter, merged = tmp_path / "adapter.gguf", tmp_path / "merged.gguf"
    assert pice_main([*common, "--edge-model", EDGE_MODEL, "--out", str(adapter)]) == 0
    assert pice_main([*common, "--edge-model", EDGE_MODEL, "--merged", "--out", str(merged)]) == 0
    meta = json.loads(merged.with_name("merged.gguf.json").read_text())
    assert meta["format"].startswith("merged GGUF")
    assert meta["export"]["merged_weights"] == 4 * 24  # q, v, o, down of 24 layers

    base_path = resolve_model(EDGE_MODEL, pull=False).path
    base = inspect_gguf(base_path)
    assert inspect_gguf(merged)["tensors"] == base["tensors"]  # same names, shapes, layout
    stock, adapted = text_logits(base_path), text_logits(base_path, adapter)
    folded = text_logits(merged)
    effect = float(np.abs(adapted - stock).mean())
    assert effect > 0.05  # the toy adapter does change the logits (2.3 when measured)...
    # ...and the merged model lands with it, up to Q8_0 rounding of the sum (0.05).
    assert float(np.abs(folded - adapted).mean()) < 0.25 * effect
