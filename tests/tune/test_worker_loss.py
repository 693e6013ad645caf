"""The worker's completion-only loss equals Hugging Face's causal-LM loss, value and gradients.

Runs in the tuning environment (torch, transformers, peft) on a tiny randomly initialised
Qwen2 model with a LoRA whose B is random (a fresh LoRA is the identity and its gradients
would say little), over a padded batch whose prompts are masked with -100.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.tune.test_pipeline_real import tune_venv

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.util, json, sys
import peft, torch, transformers

spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)

torch.manual_seed(0)
config = transformers.Qwen2Config(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
)
model = transformers.Qwen2ForCausalLM(config)
lora = peft.LoraConfig(
    r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
    init_lora_weights=False, task_type="CAUSAL_LM",
)
model = peft.get_peft_model(model, lora)
model.eval()  # no dropout: both losses see the same network
rows = [(list(range(5, 25)), 14), (list(range(40, 52)), 9), (list(range(100, 130)), 22)]
width = max(len(ids) for ids, _ in rows)
input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in rows])
labels = torch.tensor(
    [[-100] * p + ids[p:] + [-100] * (width - len(ids)) for ids, p in rows]
)
mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

def grads(loss):
    for _, p in params:
        p.grad = None
    loss.backward()
    return {n: p.grad.clone() for n, p in params}

hf = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
hf_grads = grads(hf)
ours = worker.completion_loss(torch, model, input_ids, mask, labels)
our_grads = grads(ours)
pairs = [(ids, [-100] * p + ids[p:]) for ids, p in rows]
model.train()
val = worker.validation_loss(torch, model, pairs, 2, 0)  # batches of 2 and 1
still_training = model.training
model.eval()
with torch.no_grad():
    whole = worker.completion_loss(torch, model, input_ids, mask, labels)
print(json.dumps({
    "val": val, "val_whole_batch": float(whole), "still_training": still_training,
    "hf": float(hf), "ours": float(ours),
    "grad_diff": max(float((hf_grads[n] - our_grads[n]).abs().max()) for n, _ in params),
    "grad_norm": max(float(g.abs().max()) for g in hf_grads.values()),
    "kept": int((labels[:, 1:] != -100).sum()),
}))
"""


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    venv = tune_venv()
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SCRIPT, str(ROOT / "src/pice_tune/worker.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_completion_loss_matches_the_full_projection(measured: dict[str, Any]) -> None:
    out = measured
    assert out["kept"] == (20 - 14) + (12 - 9) + (30 - 22)
    assert out["hf"] > 1.0  # a random model over 512 tokens: far from a trivial loss
    assert abs(out["hf"] - out["ours"]) < 1e-5 * out["hf"]
    assert out["grad_norm"] > 0
    assert out["grad_diff"] < 1e-4 * out["grad_norm"]


def test_validation_loss_is_per_token_over_all_batches_without_dropout(
    measured: dict[str, Any],
) -> None:
    out = measured
    # Batches of 2 and 1, weighted by completion tokens: the loss of one batch of all three.
    assert abs(out["val"] - out["val_whole_batch"]) < 1e-5 * out["val_whole_batch"]
    assert out["still_training"]  # the model is handed back in training mode
