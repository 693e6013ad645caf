"""``--lora-merge`` on the real 0.5B edge model (Q8_0): llama.cpp computes with the merged
file what it computes with the stock file and the adapter, and the agent serves it so.

The adapter is random factors over the q and v weights of all 24 layers, written with the
``gguf`` package (no tuning environment): what an adapter costs or changes depends on its
shape and values, not on how it was trained.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import httpx
import numpy as np
import pytest

from edge_agent.engine.llama import LlamaModel
from edge_agent.engine.lora_merge import merged_model
from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model
from tests.support.gguf_files import weight_shapes, write_lora
from tests.support.logits import text_logits
from tests.support.processes import ServerProcess, free_port, pice_argv, running

pytestmark = pytest.mark.model

EDGE_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
WEIGHTS = [f"blk.{i}.attn_{w}.weight" for i in range(24) for w in ("q", "v")]
SCALE = 0.5


@pytest.fixture(scope="module")
def base() -> Path:
    return resolve_model(EDGE_MODEL, pull=False).path


@pytest.fixture(scope="module")
def adapter(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "tuned.gguf"
    return write_lora(out, "qwen2", weight_shapes(base, WEIGHTS), rank=8, alpha=16.0, b_scale=0.05)


def test_the_merged_model_computes_what_the_adapter_does(
    base: Path, adapter: Path, tmp_path: Path
) -> None:
    report = merged_model(base, adapter, SCALE, tmp_path)
    assert report.merged_weights == len(WEIGHTS)
    stock = text_logits(base)
    adapted = text_logits(base, adapter, SCALE)
    folded = text_logits(report.path)
    effect = float(np.abs(adapted - stock).mean())
    assert effect > 0.2  # the adapter changes the logits...
    # ...and the merged model lands with it, up to the Q8_0 rounding of the sum.
    assert float(np.abs(folded - adapted).mean()) < 0.25 * effect


def test_a_k_quant_weight_is_refused_with_a_way_out(small_model_path: Path, tmp_path: Path) -> None:
    # The bundled "Q4_K_M" file keeps ffn_down in Q4_K/Q6_K, which the gguf package cannot
    # write (most of its other weights are Q5_0 or Q8_0, which it can).
    names = ["blk.0.ffn_down.weight"]
    down = write_lora(tmp_path / "down.gguf", "qwen2", weight_shapes(small_model_path, names))
    with pytest.raises(ModelProvisioningError, match=r"ffn_down\.weight is Q[46]_K.*Q8_0"):
        merged_model(small_model_path, down, 1.0, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.gguf*"))


def test_the_agent_serves_the_merged_model_and_says_so(
    base: Path, adapter: Path, tmp_path: Path
) -> None:
    port = free_port()
    argv = pice_argv(
        "edge", "serve", "--model", str(base), "--model-id", "edge", "--port", str(port),
        "--threads", "2", "--ctx", "1024", "--max-seqs", "2",
        "--lora", str(adapter), "--lora-scale", str(SCALE), "--lora-merge",
    )  # fmt: skip
    cache = tmp_path / "cache"
    process = ServerProcess(
        argv=argv, port=port, log_path=tmp_path / "edge.log", env={"PICE_MODEL_CACHE": str(cache)}
    )
    with running(process, timeout=600.0) as agent:
        card = httpx.get(agent.base_url + "/v1/models").json()["data"][0]
        assert card["adapter"]["name"] == "tuned"
        assert card["adapter"]["merged"] is True
        assert card["adapter"]["scale"] == SCALE
        body = {"model": "edge", "messages": [{"role": "user", "content": "Name a colour."}]}
        reply = httpx.post(
            agent.base_url + "/v1/chat/completions",
            json={**body, "max_tokens": 8, "temperature": 0},
            timeout=120.0,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
    merged = list((cache / "merged").glob("*.gguf"))
    assert len(merged) == 1
    assert merged[0].name.startswith(f"{base.stem}+tuned-")


def test_an_adapter_llama_cpp_would_crash_on_is_refused_at_load(
    small_model_path: Path, tmp_path: Path
) -> None:
    # llama.cpp loads F64 factors and then kills the process on the first decode (seen with
    # a test helper's stray float64): the agent refuses them at start with a reason instead.
    f64 = tmp_path / "f64.gguf"
    writer = gguf.GGUFWriter(str(f64), "qwen2")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 4.0)
    (n_out, n_in) = weight_shapes(small_model_path, ["blk.0.attn_q.weight"])["blk.0.attn_q.weight"]
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, n_in), dtype=np.float64))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((n_out, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model = LlamaModel(small_model_path)
    try:
        with pytest.raises(ModelProvisioningError, match="F64 factors"):
            model.load_adapter(f64)
        # The same adapter in F32 loads.
        good = write_lora(tmp_path / "f32.gguf", "qwen2", {"blk.0.attn_q.weight": (n_out, n_in)})
        assert model.load_adapter(good).path == good
    finally:
        model.close()
