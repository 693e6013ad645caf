"""``pice tune router-encoder`` at toy size on the real encoder weights (all-MiniLM-L6-v2).

Needs ``.venv-tune`` (``make tune-env``; or ``PICE_TUNE_VENV``): skipped without it. One epoch
on twelve questions: the factors it writes name every linear layer of the pinned ONNX encoder
with that layer's shapes, so the gateway's derivation adds them; the recipe records the data.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pice.models.assets import provision_asset
from pice.models.registry import default_cache_dir
from pice_cli.main import main as pice_main
from pice_gateway.router.assets import ENCODER_ONNX, EncoderFiles, provision_encoder
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.quantize import quantize_encoder
from pice_gateway.router.training import DATA_DIR
from pice_tune.router_encoder import model_dir
from tests.tune.test_pipeline_real import tune_venv

pytestmark = pytest.mark.model


def test_the_encoder_lora_fits_the_pinned_encoder_and_changes_it(tmp_path: Path) -> None:
    venv = tune_venv()
    lines = (DATA_DIR / "train.jsonl").read_text().splitlines()
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(lines[:12]) + "\n")
    out = tmp_path / "lora.npz"
    args = ["tune", "--workdir", str(tmp_path), "router-encoder", "--data", str(data),
            "--out", str(out), "--epochs", "1", "--rank", "2", "--lr", "0.01",
            "--venv", str(venv)]  # fmt: skip
    assert pice_main(args) == 0

    factors = np.load(out)
    a_names = sorted(k for k in factors.files if k.endswith(".lora_a"))
    assert len(a_names) == 36
    for name in a_names:
        module = name.removesuffix(".lora_a")
        a, b = factors[name], factors[f"{module}.lora_b"]
        width = 1536 if module.endswith("output.dense") and "attention" not in module else 384
        assert a.shape == (2, width)
        assert b.shape[1] == 2
    # Trained: peft starts every B at zero, so a step leaves some non-zero.
    assert any(np.abs(factors[k]).max() > 0 for k in factors.files if k.endswith(".lora_b"))
    recipe = json.loads(out.with_suffix(".json").read_text())
    assert recipe["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert recipe["examples"] == 12
    assert recipe["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()

    # The gateway's derivation takes them (every module found, every shape right) ...
    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    quantize_encoder(source, tmp_path / "tuned.onnx", out)
    quantize_encoder(source, tmp_path / "plain.onnx")
    tokenizer = provision_encoder(pull=False).tokenizer
    tuned = SentenceEncoder(EncoderFiles(tmp_path / "tuned.onnx", tokenizer))
    plain = SentenceEncoder(EncoderFiles(tmp_path / "plain.onnx", tokenizer))
    # ... and the encoder it runs is not the stock one.
    question = "What are the main causes of inflation?"
    # (one step at lr 0.01 moved it to cosine 0.985 on an AVX2 machine)
    assert float(tuned.embed(question) @ plain.embed(question)) < 0.995


HF_BLOCKS = """
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
model_dir, question = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
ids = tokenizer(question, return_tensors="pt")
out = {}
for layers in (1, 2, 3):
    model = AutoModel.from_pretrained(model_dir)
    model.encoder.layer = model.encoder.layer[:layers]
    model.eval()
    with torch.no_grad():
        pooled = model(**ids).last_hidden_state[0].mean(0)
    out[layers] = torch.nn.functional.normalize(pooled, dim=0).tolist()
print(json.dumps(out))
"""


def test_the_gateways_cut_encoder_is_hugging_faces_model_with_as_many_blocks(
    tmp_path: Path,
) -> None:
    """``quantize_encoder(layers=2)`` computes what the tuning side trains (``--layers 2``):
    Hugging Face's model with its first two blocks, not one block more or fewer."""
    venv = tune_venv()
    hf = tmp_path / "hf"
    hf.mkdir()
    model_dir(default_cache_dir(), hf)
    question = "What are the main causes of inflation?"
    script = tmp_path / "blocks.py"
    script.write_text(HF_BLOCKS)
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(script), str(hf), question],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    reference = {int(k): np.asarray(v) for k, v in json.loads(result.stdout).items()}
    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    quantize_encoder(source, tmp_path / "two.onnx", layers=2)
    tokenizer = provision_encoder(pull=False).tokenizer
    two = SentenceEncoder(EncoderFiles(tmp_path / "two.onnx", tokenizer)).embed(question)
    cosine = {layers: float(two @ ref) for layers, ref in reference.items()}
    assert cosine[2] > 0.99, cosine
    assert cosine[1] < 0.95, cosine
    assert cosine[3] < 0.95, cosine
