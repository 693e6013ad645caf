"""The preference round at toy size on the real bundled 0.5B: pairs from a real edge's own
candidates, a DPO step in the tuning environment, an adapter llama.cpp loads.

The expander's data step (a scripted teacher, as in ``test_pipeline_real``) only supplies the
outlines; the candidates come from the embedded edge agent running the real model, and the
training runs trl's DPO for real. Needs ``.venv-tune``; skipped without it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pice.errors import ModelProvisioningError
from pice.models.registry import resolve_model
from pice_cli.main import main as pice_main
from pice_tune import worker
from pice_tune.dataset import PairExample, read_dataset
from pice_tune.filters import Expansion, reject_reason
from tests.gateway.fakes import serve
from tests.support.logits import text_logits
from tests.tune.test_pipeline_real import (
    EDGE_MODEL,
    scripted_teacher,
    tune_venv,
    write_questions,
)

pytestmark = pytest.mark.model

K = 3
TRAIN = ["--rank", "4", "--alpha", "16", "--lr", "5e-3", "--seq-len", "256", "--batch-size", "2",
         "--targets", "q_proj,v_proj", "--save-every", "2", "--threads", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir after the expander's data step (outlines), the preference data step (the real
    edge's candidates), two DPO steps and the export."""
    venv = tune_venv()
    work = tmp_path_factory.mktemp("preference")
    questions = write_questions(work)
    common = ["tune", "--workdir", str(work)]
    with serve(scripted_teacher()) as url:
        assert pice_main(
            [*common, "data", "--questions", str(questions), "--cloud-url", url + "/v1",
             "--cloud-model", "teacher"]
        ) == 0  # fmt: skip
    assert pice_main(
        [*common, "data", "--role", "preference", "--questions", str(questions),
         "--candidates", str(K), "--threads", "2"]
    ) == 0  # fmt: skip
    assert pice_main(
        [*common, "train", "--role", "preference", "--venv", str(venv), "--max-steps", "2", *TRAIN]
    ) == 0  # fmt: skip
    assert pice_main([*common, "export", "--role", "preference", "--venv", str(venv)]) == 0
    return work


def test_pairs_come_from_the_edges_candidates_and_the_chosen_pass_the_filters(work: Path) -> None:
    manifest = json.loads((work / "pairs-v1.jsonl.manifest.json").read_text())
    assert manifest["role"] == "preference"
    assert manifest["edge_model"] == EDGE_MODEL
    assert manifest["sampling"]["k"] == K
    pairs, digest = read_dataset(work / "pairs-v1.jsonl")
    assert digest == manifest["data_sha256"]
    assert pairs
    assert sum(manifest["pairs_by_reason"].values()) == len(pairs)
    # Every point of the two 3-point outlines gave a pair or a reason it gave none.
    assert len(pairs) + sum(manifest["dropped"].values()) == 6
    raw = [
        json.loads(line) for line in (work / "pairs-v1.jsonl.raw.jsonl").read_text().splitlines()
    ]
    for row in raw:
        assert [len(point) for point in row["candidates"]] == [K, K, K]
    for pair in pairs:
        assert isinstance(pair, PairExample)
        assert pair.chosen != pair.rejected
        chosen = Expansion(pair.question, pair.sketch, pair.index, pair.chosen, "stop")
        assert reject_reason(chosen) is None
        texts = [c["text"].strip() for row in raw for c in row["candidates"][pair.index]]
        assert pair.chosen in texts
        assert pair.rejected in texts


def test_dpo_moves_the_model_towards_the_chosen(work: Path) -> None:
    run = work / "run-preference"
    recorded = json.loads((run / "recipe.json").read_text())
    assert recorded["method"] == {"dpo": {"beta": 0.1, "init_adapter": None}}
    summary = json.loads((run / worker.SUMMARY_FILE).read_text())
    assert summary["method"] == "dpo"
    assert summary["steps"] == 2
    # DPO starts at log 2 (the policy is the reference) and falls as the margin opens.
    assert summary["losses"][0] == pytest.approx(0.6931, abs=1e-3)
    assert summary["losses"][-1] < summary["losses"][0]
    assert summary["reward_margins"][-1] > 0


def test_the_preference_run_resumes_and_refuses_another_beta(work: Path) -> None:
    common = ["tune", "--workdir", str(work), "train", "--role", "preference"]
    venv = ["--venv", str(tune_venv())]
    assert pice_main([*common, *venv, "--max-steps", "3", *TRAIN]) == 0
    summary = json.loads((work / "run-preference" / worker.SUMMARY_FILE).read_text())
    assert summary["resumed_from"] == "checkpoint-2"
    assert summary["steps"] == 3
    with pytest.raises(ModelProvisioningError, match="another recipe"):
        pice_main([*common, *venv, "--max-steps", "4", "--beta", "0.5", *TRAIN])


def test_a_run_stopped_at_a_checkpoint_and_asked_for_its_steps_trains_none(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A run planned for more steps and stopped after a checkpoint, then asked for the steps it
    # has: the Trainer, resumed mid-epoch, would train one step more. Which checkpoint is
    # mid-epoch depends on how many pairs the real candidates gave (batch 2).
    run = work / "run-preference"
    common = ["tune", "--workdir", str(work), "train", "--role", "preference"]
    venv = ["--venv", str(tune_venv())]
    pairs = json.loads((run / worker.SUMMARY_FILE).read_text())["pairs"]
    per_epoch = -(-pairs // 2)
    kept = sorted(
        int(p.name.removeprefix(worker.CHECKPOINT_PREFIX)) for p in run.glob("checkpoint-*")
    )
    mid = [step for step in kept if step % per_epoch]
    if not mid:
        pytest.skip(f"{pairs} pairs: every kept checkpoint ends an epoch")
    at = mid[0]
    for later in (s for s in kept if s > at):  # stopped after checkpoint ``at``
        shutil.rmtree(run / f"{worker.CHECKPOINT_PREFIX}{later}")
    checkpoint = run / f"{worker.CHECKPOINT_PREFIX}{at}"
    assert pice_main([*common, *venv, "--max-steps", str(at), *TRAIN]) == 0
    summary = json.loads((run / worker.SUMMARY_FILE).read_text())
    assert (summary["steps"], summary["resumed_from"]) == (at, checkpoint.name)
    assert len(summary["losses"]) == at, "the checkpoint's own history"
    assert worker.latest_checkpoint(run, marker="trainer_state.json") == checkpoint, "no step more"
    adapter = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert adapter == (checkpoint / "adapter_model.safetensors").read_bytes()
    capfd.readouterr()
    with pytest.raises(ModelProvisioningError, match="failed"):
        pice_main([*common, *venv, "--max-steps", str(at - 1), *TRAIN])
    assert f"at step {at} already" in capfd.readouterr().err


def test_llama_cpp_applies_the_exported_adapter(work: Path) -> None:
    import numpy as np

    adapter = work / "preference-adapter.gguf"
    meta = json.loads(adapter.with_name("preference-adapter.gguf.json").read_text())
    assert meta["training"]["method"] == "dpo"
    base = resolve_model(EDGE_MODEL, pull=False).path
    effect = float(np.abs(text_logits(base, adapter) - text_logits(base)).mean())
    assert effect > 0.01
