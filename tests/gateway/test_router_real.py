"""The router with its real encoder (all-MiniLM-L6-v2 + LoRA, dynamic-int8 ONNX, `make models`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pice.models.assets import provision_asset
from pice.models.registry import default_cache_dir
from pice_gateway.router.assets import (
    ENCODER_LORA,
    ENCODER_ONNX,
    EncoderFiles,
    provision_encoder,
)
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
from pice_gateway.router.quantize import apply_lora, linear_weights, quantize_encoder
from pice_gateway.router.service import RequestRouter
from pice_gateway.router.training import DATA_DIR, load_examples, train
from pice_gateway.settings import RouterSettings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(provision_encoder(pull=False))


@pytest.fixture(scope="module")
def staged() -> SentenceEncoder:
    """The same graph cut at the shipped weights' exit blocks, as the gateway runs it."""
    exits = RouterWeights.load(BUNDLED_WEIGHTS).exit_blocks
    return SentenceEncoder(provision_encoder(pull=False, exits=exits))


def test_the_shipped_router_has_early_exits_and_its_graph_is_cut_there(
    staged: SentenceEncoder,
) -> None:
    shipped = RouterWeights.load(BUNDLED_WEIGHTS)
    assert shipped.exit_blocks == (2, 4)
    assert staged.stages == 3
    files = provision_encoder(pull=False, exits=shipped.exit_blocks)
    assert [p.name.rsplit(".", 2)[-2] for p in files.stages] == ["stage0", "stage1", "stage2"]


def test_the_cut_encoders_last_stage_is_the_whole_encoder_bit_for_bit(
    encoder: SentenceEncoder, staged: SentenceEncoder
) -> None:
    questions = [e.question for e in load_examples(DATA_DIR / "dev.jsonl")][:25]
    for question in questions:
        first, second, last = staged.embed_stages(question)
        np.testing.assert_array_equal(last, encoder.embed(question))
        for early in (first, second):
            assert float(np.linalg.norm(early)) == pytest.approx(1.0, abs=1e-4)
            assert float(early @ last) < 0.999  # an earlier state, not the output again


def test_an_exit_decides_only_when_sure_and_otherwise_the_final_head_as_before(
    encoder: SentenceEncoder, staged: SentenceEncoder
) -> None:
    shipped = RouterWeights.load(BUNDLED_WEIGHTS)
    questions = [e.question for e in load_examples(DATA_DIR / "dev.jsonl")]
    where: dict[int | None, int] = {}
    same = 0
    for question in questions:
        decision = shipped.decide_staged(staged.embed_stages(question))
        final = shipped.decide(encoder.embed(question))  # the final head alone
        where[decision.exit_block] = where.get(decision.exit_block, 0) + 1
        if decision.exit_block is None:
            assert decision == final  # not exited: exactly the final head's decision
        else:
            assert decision.score >= 0.95 or decision.score <= 0.05
        same += decision.route == final.route
    # Most of the development questions stop early, at each exit, and nearly all as before.
    assert where.get(2, 0) > len(questions) / 3
    assert where.get(4, 0) > 0
    assert where.get(None, 0) > 0
    assert same >= 0.97 * len(questions)


def test_embeddings_are_normalised_and_put_paraphrases_together(encoder: SentenceEncoder) -> None:
    a = encoder.embed("How can I sleep better at night?")
    b = encoder.embed("What are some tips for improving my sleep?")
    c = encoder.embed("Write a Python function that reverses a linked list.")
    assert a.shape == (384,)
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-4)
    assert float(a @ b) > 0.6
    assert float(a @ b) > float(a @ c) + 0.4
    # Long inputs are cut to the model's window, keeping the end (where the question is).
    long = encoder.embed("background " * 400 + "How can I sleep better at night?")
    assert long.shape == (384,)


def test_the_quantised_encoder_embeds_like_the_pinned_file(tmp_path: Path) -> None:
    # The int8 derivation alone (no fine-tuning) stays close to the file it is derived from.
    files = provision_encoder(pull=False)
    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    quantize_encoder(source, tmp_path / "plain.onnx")
    plain = SentenceEncoder(EncoderFiles(tmp_path / "plain.onnx", files.tokenizer))
    pinned = SentenceEncoder(EncoderFiles(source, files.tokenizer))
    questions = [e.question for e in load_examples(DATA_DIR / "dev.jsonl")][:40]
    cosines = [float(plain.embed(q) @ pinned.embed(q)) for q in questions]
    assert min(cosines) > 0.98


def test_the_shipped_lora_adapts_every_linear_layer_and_moves_the_embeddings(
    encoder: SentenceEncoder, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    folded = tmp_path / "folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    model = onnx.load(folded)
    assert len(linear_weights(model)) == 36  # 6 blocks x (query, key, value, 3 dense)
    assert apply_lora(model, ENCODER_LORA) == 36
    # The fine-tuning is in the encoder the router runs: it embeds unlike the stock model.
    files = provision_encoder(pull=False)
    quantize_encoder(source, tmp_path / "plain.onnx")
    plain = SentenceEncoder(EncoderFiles(tmp_path / "plain.onnx", files.tokenizer))
    questions = [e.question for e in load_examples(DATA_DIR / "dev.jsonl")][:40]
    cosines = [float(encoder.embed(q) @ plain.embed(q)) for q in questions]
    assert min(cosines) < 0.9


def test_retraining_on_the_shipped_data_reproduces_the_shipped_weights(
    staged: SentenceEncoder, tmp_path: Path
) -> None:
    shipped = RouterWeights.load(BUNDLED_WEIGHTS)
    again = train(
        staged.embed_stages,
        DATA_DIR / "train.jsonl",
        DATA_DIR / "dev.jsonl",
        version=shipped.version,
        log=lambda _: None,
        deploy_outline_share=shipped.meta["deploy_outline_share"],
        exits=shipped.exit_blocks,
        exit_confidence=shipped.exit_confidence,
    )
    assert again.threshold == pytest.approx(shipped.threshold, abs=1e-3)
    assert again.meta["threshold_from"] == shipped.meta["threshold_from"]
    # The int8 encoder's kernels differ by CPU (AVX2 or AVX-512 VNNI), so its embeddings, and
    # the weights fitted on them, differ in the third decimal from one machine to another
    # (largest coefficient difference 0.0028 on an AVX2-only EPYC, 0.16% of the vector's norm);
    # a different recipe or data moves them by far more.
    shift = np.linalg.norm(np.subtract(again.coef, shipped.coef)) / np.linalg.norm(shipped.coef)
    assert shift < 0.01
    assert again.intercept == pytest.approx(shipped.intercept, abs=0.01)
    assert again.meta["dev_accuracy"] == pytest.approx(shipped.meta["dev_accuracy"], abs=0.01)
    # The exit heads too, each fitted on its block's embedding of the same questions.
    assert again.exit_blocks == shipped.exit_blocks
    for fitted, head in zip(again.exits, shipped.exits, strict=True):
        shift = np.linalg.norm(np.subtract(fitted.coef, head.coef)) / np.linalg.norm(head.coef)
        assert shift < 0.01
    assert again.meta["dev_exit_share"] == pytest.approx(shipped.meta["dev_exit_share"], abs=0.02)


async def test_the_shipped_router_decides_clear_cases() -> None:
    router = RequestRouter.load(RouterSettings(pull=False))
    from pice.openai_protocol import ChatMessage

    def ask(text: str) -> list[ChatMessage]:
        return [ChatMessage(role="user", content=text)]

    outline = await router.decide(ask("What are the main benefits of regular exercise?"))
    direct = await router.decide(ask("What is 17 multiplied by 23?"))
    code = await router.decide(ask("Write a Python function that checks if a number is prime."))
    assert outline.route == "outline", outline
    assert direct.route == "direct", direct
    assert code.route == "direct", code
    assert outline.version == direct.version == RouterWeights.load(BUNDLED_WEIGHTS).version
    assert outline.ms > 0


def test_eval_reads_sot_labels_and_can_leave_their_text_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pice_cli.main import main

    sot = tmp_path / "lima" / "router.csv"
    sot.parent.mkdir()
    # Two clear cases the shipped router gets right and one label it disagrees with.
    sot.write_text(
        "label;request\n"
        "1;What are some tips for staying focused while studying?\n"
        "0;What is 17 times 23?\n"
        '0;"What are the benefits of regular exercise?"\n',
        newline="",
    )
    out = tmp_path / "eval.json"
    args = ["router", "eval", str(sot), "--out", str(out), "--no-error-text"]
    assert main(args) == 0
    report = json.loads(out.read_text())[str(sot)]
    assert report["n"] == 3
    assert report["by_category"] == {"lima": {"right": 2, "total": 3}}
    (error,) = report["errors"]
    assert set(error) == {"index", "label", "score"}  # no text
    assert (error["index"], error["label"]) == (2, "direct")
    assert error["score"] >= RouterWeights.load(BUNDLED_WEIGHTS).threshold  # it said outline
    assert "| lima/router.csv | 3 | 0.667 |" in capsys.readouterr().out


def test_pull_provisions_the_stages_the_shipped_exits_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pice_cli.main import main

    assert main(["router", "pull"]) == 0  # the default cache, where `make models` put the files
    stages = [
        Path(line.removeprefix("router encoder stage: "))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("router encoder stage: ")
    ]
    assert len(stages) == len(RouterWeights.load(BUNDLED_WEIGHTS).exits) + 1
    assert all(stage.is_file() for stage in stages)
