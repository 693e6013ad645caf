"""The preference round at toy size on the real bundled 0.5B: pairs from a real edge's own
candidates, a DPO step in the tuning environment, an adapter llama.cpp loads.

The expander's data step (a scripted teacher, as in ``test_pipeline_real``) only supplies the
outlines; the candidates come from the embedded edge agent running the real model, and the
training runs trl's DPO for real. The judge's verdicts, the second source of pairs, are asked of
the real model too (``benchmarks/judge_candidates.py``). Needs ``.venv-tune``; skipped without it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest

from pice.models.provision import hash_file
from pice.models.registry import resolve_model
from pice_bench.judge import Judge
from pice_cli.main import main as pice_main
from pice_tune import worker
from pice_tune.dataset import PairExample, load_questions, read_dataset
from pice_tune.distill import load_raw_cache
from pice_tune.filters import Expansion, reject_reason
from pice_tune.preference import PairRule, load_verdicts
from pice_tune.steps import embedded_cloud
from tests.gateway.fakes import serve
from tests.support.logits import text_logits
from tests.support.scripts import load_benchmark
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


def test_the_preference_run_resumes_and_refuses_another_beta(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    common = ["tune", "--workdir", str(work), "train", "--role", "preference"]
    venv = ["--venv", str(tune_venv())]
    assert pice_main([*common, *venv, "--max-steps", "3", *TRAIN]) == 0
    summary = json.loads((work / "run-preference" / worker.SUMMARY_FILE).read_text())
    assert summary["resumed_from"] == "checkpoint-2"
    assert summary["steps"] == 3
    capfd.readouterr()
    assert pice_main([*common, *venv, "--max-steps", "4", "--beta", "0.5", *TRAIN]) == 1
    assert "another recipe" in capfd.readouterr().err


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
    assert pice_main([*common, *venv, "--max-steps", str(at - 1), *TRAIN]) == 1
    err = capfd.readouterr().err
    assert "error: " in err
    assert "failed" in err
    assert f"at step {at} already" in err


def test_llama_cpp_applies_the_exported_adapter(work: Path) -> None:
    import numpy as np

    adapter = work / "preference-adapter.gguf"
    meta = json.loads(adapter.with_name("preference-adapter.gguf.json").read_text())
    assert meta["training"]["method"] == "dpo"
    base = resolve_model(EDGE_MODEL, pull=False).path
    effect = float(np.abs(text_logits(base, adapter) - text_logits(base)).mean())
    assert effect > 0.01


def test_the_real_judges_verdicts_orient_the_pairs_the_filters_leave_open(work: Path) -> None:
    """The real model judges the real candidates (both orders, as the benchmark asks), and the
    data step, given its verdicts, orients by them exactly the points they cover, from the
    cache alone (no edge is started)."""
    script = load_benchmark("judge_candidates")
    questions = {q.id: q for q in load_questions(work / "questions.jsonl")}
    cache = load_raw_cache(work / "pairs-v1.jsonl.raw.jsonl")
    todo = script.targets(questions, cache, PairRule())
    assert todo, "some point of the real candidates has no candidate a filter rejects"
    verdicts_file = work / "verdicts.jsonl"

    async def judge_all(base_url: str, model: str, api_key: str | None) -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            judge = Judge(client, base_url, model, api_key)
            await script.judge_all(judge, todo, verdicts_file, concurrency=2)

    with embedded_cloud(EDGE_MODEL, 2, work / "judge-logs") as judge:
        asyncio.run(judge_all(judge.base_url, judge.model, judge.api_key))
    rows = [json.loads(line) for line in verdicts_file.read_text().splitlines()]
    assert not any(row["failed"] for row in rows)
    assert sorted((r["question_id"], r["index"], r["a"], r["b"]) for r in rows) == sorted(
        (t.question.id, t.index, t.pair.a, t.pair.b) for t in todo
    )
    assert script.judged_keys(verdicts_file) == {t.key for t in todo}, "a rerun asks nothing"
    verdicts = load_verdicts(verdicts_file)

    out = work / "pairs-judge.jsonl"
    shutil.copy(work / "pairs-v1.jsonl.raw.jsonl", work / "pairs-judge.jsonl.raw.jsonl")
    assert pice_main(
        ["tune", "--workdir", str(work), "data", "--role", "preference",
         "--questions", str(work / "questions.jsonl"), "--candidates", str(K),
         "--out", str(out), "--verdicts", str(verdicts_file)]
    ) == 0  # fmt: skip
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["pair_rule"]["by"] == "judge"
    assert manifest["verdicts_sha256"] == hash_file(verdicts_file)
    assert manifest["edge_url"] is None, "every candidate came from the cache"
    by_judge = {(p.question_id, p.index): p for p in read_dataset(out)[0] if p.why == "judge"}
    decided = {k: v for k, v in verdicts.items() if v.outcome != "tie"}
    assert by_judge.keys() == decided.keys()
    assert manifest["dropped"].get("judge_tie", 0) == len(verdicts) - len(decided)
    for key, verdict in decided.items():
        texts = [c["text"].strip() for c in cache[key[0]]["candidates"][key[1]]]
        winner, loser = (
            (verdict.a, verdict.b) if verdict.outcome == "win" else (verdict.b, verdict.a)
        )
        assert (by_judge[key].chosen, by_judge[key].rejected) == (texts[winner], texts[loser])
    # Where a filter decided, the pair is the score run's.
    filtered = [p for p in read_dataset(work / "pairs-v1.jsonl")[0] if p.why not in ("score",)]
    assert filtered == [p for p in read_dataset(out)[0] if p.why not in ("judge",)]
