"""The router without its encoder: the head, the path it chooses, and the gateway around it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openai
import pytest

from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatMessage
from pice_gateway.app import create_app
from pice_gateway.path_choice import PathChoice, apply_route
from pice_gateway.router.assets import ENCODER_LORA, encoder_id, lora_sha256
from pice_gateway.router.model import (
    BUNDLED_WEIGHTS,
    MAX_TEXT_CHARS,
    ExitHead,
    RouteDecision,
    RouterWeights,
    route_text,
)
from pice_gateway.router.service import RequestRouter
from pice_gateway.router.training import (
    DATA_DIR,
    Example,
    best_threshold,
    bootstrap_ci,
    data_sha256,
    evaluate,
    load_examples,
    prior_threshold,
    train,
)
from pice_gateway.settings import RouterSettings
from tests.gateway.conftest import openai_client, settings_for
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve

DIM = 8


class KeywordEncoder:
    """A stand-in encoder: axis 0 says "this asks for a list", axis 1 "this asks for code"."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        self.calls.append(text)
        v = np.zeros(DIM, dtype=np.float32)
        lowered = text.lower()
        v[0] = 1.0 if any(w in lowered for w in ("tips", "ways", "reasons")) else -1.0
        v[1] = 1.0 if any(w in lowered for w in ("code", "function", "compute")) else 0.0
        v[2] = 0.1 * (len(text) % 3)  # noise the head must learn to ignore
        return v / np.linalg.norm(v)

    def embed_stages(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        yield self.embed(text)


def weights(threshold: float = 0.5) -> RouterWeights:
    coef = [0.0] * DIM
    coef[0], coef[1] = 6.0, -4.0
    return RouterWeights("test-v1", "keyword", tuple(coef), 0.0, threshold)


def test_the_head_scores_and_decides_by_its_threshold() -> None:
    w = weights()
    encoder = KeywordEncoder()
    listy = encoder.embed("Give me tips to sleep better")
    code = encoder.embed("Write code to compute primes")
    assert w.score(listy) > 0.9
    assert w.score(code) < 0.1
    assert w.decide(listy).route == "outline"
    assert w.decide(code).route == "direct"
    assert w.decide(listy, threshold=0.999).route == "direct"


def test_weights_round_trip_through_json(tmp_path: Path) -> None:
    original = weights(0.42)
    path = tmp_path / "w.json"
    original.save(path)
    loaded = RouterWeights.load(path)
    assert (loaded.version, loaded.encoder, loaded.threshold) == ("test-v1", "keyword", 0.42)
    assert loaded.coef == pytest.approx(original.coef)


class StagedKeywordEncoder(KeywordEncoder):
    """Two stages: after "block 1" only the list axis is known (axis 0, the code axis zero),
    then the whole embedding; counts the stages computed."""

    def __init__(self) -> None:
        super().__init__()
        self.stages_run = 0

    def embed_stages(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        whole = self.embed(text)
        early = np.zeros(DIM, dtype=np.float32)
        early[0] = whole[0] if "maybe" not in text else 0.0  # "maybe": the early head is unsure
        self.stages_run += 1
        yield early
        self.stages_run += 1
        yield whole


def exiting_weights(confidence: float = 0.95) -> RouterWeights:
    head = [0.0] * DIM
    head[0] = 8.0
    return replace(weights(), exits=(ExitHead(1, tuple(head), 0.0),), exit_confidence=confidence)


def test_an_exit_head_that_is_sure_decides_and_the_later_stages_are_not_run() -> None:
    encoder = StagedKeywordEncoder()
    w = exiting_weights()
    listy = w.decide_staged(encoder.embed_stages("Give me tips to sleep better"))
    assert (listy.route, listy.exit_block, encoder.stages_run) == ("outline", 1, 1)
    assert listy.score > 0.95
    assert listy.report()["exit_block"] == 1
    # Unsure at the exit (score 0.5): the final head decides on the whole embedding.
    encoder.stages_run = 0
    question = "maybe write code to compute primes"
    unsure = w.decide_staged(encoder.embed_stages(question))
    assert (unsure.route, unsure.exit_block, encoder.stages_run) == ("direct", None, 2)
    assert unsure.score == pytest.approx(w.score(encoder.embed(question)))
    # A stricter exit sends more questions on to the final head.
    strict = exiting_weights(confidence=0.99999)
    assert strict.decide_staged(encoder.embed_stages("Give me tips")).exit_block is None


def test_stages_that_do_not_match_the_exits_are_refused() -> None:
    # An exit head that is never sure, so the stages are read to their end.
    w = replace(weights(), exits=(ExitHead(1, (0.0,) * DIM, 0.0),))
    with pytest.raises(ValueError, match="do not match"):
        w.decide_staged(KeywordEncoder().embed_stages("Write code"))  # one stage for one exit
    with pytest.raises(ValueError, match="do not match"):
        weights().decide_staged(StagedKeywordEncoder().embed_stages("Write code"))


@pytest.mark.parametrize(
    ("blocks", "confidence", "error"),
    [((2, 1), 0.95, "increasing"), ((1, 1), 0.95, "increasing"), ((0,), 0.95, "positive"),
     ((1,), 0.5, "exit_confidence")],
)  # fmt: skip
def test_exits_out_of_order_or_an_exit_that_is_never_sure_are_refused(
    blocks: tuple[int, ...], confidence: float, error: str
) -> None:
    heads = tuple(ExitHead(b, (0.0,) * DIM, 0.0) for b in blocks)
    with pytest.raises(ValueError, match=error):
        replace(weights(), exits=heads, exit_confidence=confidence)


def test_exit_heads_round_trip_through_json(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    exiting_weights(0.9).save(path)
    loaded = RouterWeights.load(path)
    assert loaded.exit_blocks == (1,)
    assert loaded.exit_confidence == 0.9
    assert loaded.exits[0].coef == exiting_weights().exits[0].coef
    # Weights written before exits existed load without them.
    old = json.loads(path.read_text())
    del old["exits"], old["exit_confidence"]
    path.write_text(json.dumps(old))
    assert RouterWeights.load(path).exits == ()


def write_sets(tmp_path: Path, kinds: list[tuple[str, str]], dev: int) -> tuple[Path, Path]:
    """40 questions of each kind (a question prefix, its label), interleaved, as a training file;
    the first ``dev`` of them as a development file."""
    lines = [
        {"question": f"{prefix} {i}", "label": label} for i in range(40) for prefix, label in kinds
    ]
    train_path, dev_path = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train_path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    dev_path.write_text("\n".join(json.dumps(x) for x in lines[:dev]) + "\n")
    return train_path, dev_path


TIPS_OR_CODE = [("Give me tips number", "outline"), ("Write code for task", "direct")]


def test_training_fits_an_exit_head_per_early_stage_and_measures_it(tmp_path: Path) -> None:
    maybe = [("maybe give me tips", "outline"), ("maybe write code for", "direct")]
    train_path, dev_path = write_sets(tmp_path, TIPS_OR_CODE + maybe, dev=40)
    encoder = StagedKeywordEncoder()
    fitted = train(
        encoder.embed_stages,
        train_path,
        dev_path,
        version="t",
        log=lambda _: None,
        exits=(1,),
        exit_confidence=0.8,  # the toy's head is regularised to ~0.89 / 0.16 on its sure cases
    )
    assert (fitted.exit_blocks, fitted.exit_confidence) == ((1,), 0.8)
    assert fitted.meta["exits"][0]["block"] == 1
    # The "maybe" half of the questions gives the exit head nothing (half of them outline,
    # half direct): they go on to the final head.
    assert fitted.meta["dev_exit_share"] == pytest.approx(20 / 40)
    assert fitted.meta["dev_exit_same_as_final"] == 1.0
    result = evaluate(load_examples(dev_path), encoder.embed_stages, fitted)
    assert result.accuracy == 1.0
    assert result.exits == {"block 1": 20, "final": 20}
    with pytest.raises(ValueError, match="2 encoder stages for exits after blocks"):
        train(encoder.embed_stages, train_path, dev_path, version="t", log=lambda _: None)


def test_a_router_with_early_exit_off_runs_the_final_head_only() -> None:
    encoder = StagedKeywordEncoder()
    router = RequestRouter(encoder, exiting_weights(), early_exit=False)
    decision = router.decide_sync("Give me tips to sleep better")
    assert (decision.route, decision.exit_block) == ("outline", None)
    assert encoder.stages_run == 0  # embed(), not the stages
    on = RequestRouter(encoder, exiting_weights())
    assert on.decide_sync("Give me tips to sleep better").exit_block == 1
    # Weights without exits: nothing to exit at, whatever the setting.
    assert not RequestRouter(KeywordEncoder(), weights()).early_exit


def test_the_router_reads_the_last_user_message_and_its_end_when_long() -> None:
    messages = [
        ChatMessage(role="system", content="You are a pirate."),
        ChatMessage(role="user", content="Write a poem."),
        ChatMessage(role="assistant", content="Arr..."),
        ChatMessage(role="user", content=[{"type": "text", "text": "Now give me tips."}]),
    ]
    assert route_text(messages) == "Now give me tips."
    long = "x" * (MAX_TEXT_CHARS + 500) + " the question?"
    assert route_text([ChatMessage(role="user", content=long)]).endswith("the question?")
    assert len(route_text([ChatMessage(role="user", content=long)])) == MAX_TEXT_CHARS


def test_threshold_is_the_most_accurate_cut_nearest_one_half() -> None:
    scores = np.asarray([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    labels = np.asarray([0, 0, 0, 1, 1, 1])
    cut = best_threshold(scores, labels)
    assert 0.35 < cut <= 0.4
    assert best_threshold(np.asarray([0.2, 0.8]), np.asarray([0, 1])) == 0.5


def test_a_rarer_outline_prior_raises_the_cut_by_the_log_odds() -> None:
    assert prior_threshold(0.4, 0.4) == 0.5
    assert prior_threshold(0.5, 0.25) > 0.5 > prior_threshold(0.5, 0.75)
    # Moved by the log-odds: logit(cut) = logit(train share) - logit(deploy share).
    cut = prior_threshold(441 / 964, 0.3602)
    assert math.isclose(
        math.log(cut / (1 - cut)), math.log(441 / 523) - math.log(0.3602 / 0.6398), abs_tol=1e-3
    )
    assert cut == 0.5996
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        prior_threshold(0.5, 1.0)


def test_the_shipped_head_states_where_its_cut_comes_from() -> None:
    shipped = RouterWeights.load()
    assert shipped.meta["threshold_from"].startswith("prior:")
    assert shipped.threshold == prior_threshold(
        shipped.meta["train_outline_share"], shipped.meta["deploy_outline_share"]
    )


def test_bootstrap_interval_brackets_the_mean() -> None:
    hits = [True] * 45 + [False] * 5
    lo, hi = bootstrap_ci(hits)
    assert lo < 0.9 < hi
    assert lo > 0.75
    assert hi <= 1.0


def test_training_learns_the_signal_and_is_deterministic(tmp_path: Path) -> None:
    train_path, dev_path = write_sets(tmp_path, TIPS_OR_CODE, dev=20)
    encoder = KeywordEncoder()
    first = train(encoder.embed_stages, train_path, dev_path, version="t", log=lambda _: None)
    second = train(encoder.embed_stages, train_path, dev_path, version="t", log=lambda _: None)
    assert first.coef == second.coef
    assert first.meta["dev_accuracy"] == 1.0
    assert first.meta["data_sha256"] == data_sha256(train_path, dev_path)
    result = evaluate(load_examples(dev_path), encoder.embed_stages, first)
    assert result.accuracy == 1.0
    assert result.confusion["outline->direct"] == result.confusion["direct->outline"] == 0


def test_evaluation_counts_errors_by_label_and_category() -> None:
    examples = [
        Example("Give me tips", "outline", "advice"),
        Example("Write code", "direct", "coding"),
        Example("Compute this code", "outline", "coding"),  # the head says direct
    ]
    result = evaluate(examples, KeywordEncoder().embed_stages, weights())
    assert result.n == 3
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.confusion["outline->direct"] == 1
    assert result.by_category["coding"] == (1, 2)
    assert [(e["index"], e["question"]) for e in result.errors] == [(2, "Compute this code")]


def test_evaluation_reads_a_long_question_as_the_gateway_does() -> None:
    # A pasted block, then the ask: the gateway's router reads the message's end, and so
    # must its evaluation, or a set of long questions measures another decision.
    pasted = "Here is my code: " + "x = compute(x) " * MAX_TEXT_CHARS
    encoder = KeywordEncoder()
    question = Example(pasted + "Any tips to make it faster?", "outline")
    result = evaluate([question], encoder.embed_stages, weights())
    assert result.accuracy == 1.0
    assert encoder.calls == [
        route_text([ChatMessage(role="user", content=pasted + "Any tips to make it faster?")])
    ]
    assert len(encoder.calls[0]) == MAX_TEXT_CHARS


def test_sot_human_labels_are_read_from_their_csv(tmp_path: Path) -> None:
    # The layout of data/<set>/router.csv in the Skeleton-of-Thought repository: a request may
    # be quoted and span lines, and may hold the delimiter.
    sot = tmp_path / "vicuna" / "router.csv"
    sot.parent.mkdir()
    sot.write_text(
        'label;request\n1;How can I sleep better?\n0;"Fix this:\nx = 1; y = 2"\n',
        newline="",
    )
    examples = load_examples(sot)
    assert examples == [
        Example("How can I sleep better?", "outline", "vicuna"),
        Example("Fix this:\nx = 1; y = 2", "direct", "vicuna"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("question;label\nx;1\n", "label;request"), ("label;request\nyes;x\n", "0 or 1")],
)
def test_a_csv_of_another_shape_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "router.csv"
    path.write_text(text)
    with pytest.raises(InvalidRequestError, match=message):
        load_examples(path)


def test_apply_route_sends_direct_answers_to_the_cloud() -> None:
    auto = PathChoice("progressive", "outline", allow_direct=True)
    assert auto.wants_route
    direct = apply_route(auto, RouteDecision("direct", 0.1, 0.5, "v"))
    assert (direct.mode, direct.reason) == ("cloud", "router")
    outline = apply_route(auto, RouteDecision("outline", 0.9, 0.5, "v"))
    assert (outline.mode, outline.allow_direct) == ("progressive", False)
    assert not outline.wants_route


def test_the_shipped_weights_were_trained_on_the_shipped_data() -> None:
    shipped = RouterWeights.load(BUNDLED_WEIGHTS)
    assert shipped.meta["data_sha256"] == data_sha256(
        DATA_DIR / "train.jsonl", DATA_DIR / "dev.jsonl"
    )
    assert len(shipped.coef) == 384
    assert 0.0 < shipped.threshold < 1.0
    train_questions = {e.question.lower() for e in load_examples(DATA_DIR / "train.jsonl")}
    dev_questions = {e.question.lower() for e in load_examples(DATA_DIR / "dev.jsonl")}
    assert not train_questions & dev_questions
    # ... and on the shipped fine-tuning of the encoder, named down to its LoRA file.
    assert shipped.encoder == encoder_id(ENCODER_LORA)


def test_the_encoder_id_names_the_lora(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    other.write_bytes(ENCODER_LORA.read_bytes() + b"\0")
    assert encoder_id(other) != encoder_id(ENCODER_LORA)
    assert encoder_id(other).startswith("all-MiniLM-L6-v2+lora:")


def test_a_rewritten_lora_is_hashed_again(tmp_path: Path) -> None:
    adapter = tmp_path / "lora.npz"
    adapter.write_bytes(b"first")
    first = lora_sha256(adapter)
    assert lora_sha256(adapter) == first == hashlib.sha256(b"first").hexdigest()
    adapter.write_bytes(b"second, longer")
    assert lora_sha256(adapter) == hashlib.sha256(b"second, longer").hexdigest()


def test_a_head_fitted_on_another_lora_is_refused(tmp_path: Path) -> None:
    shipped = RouterWeights.load(BUNDLED_WEIGHTS)
    stale = tmp_path / "weights.json"
    RouterWeights(
        shipped.version, "all-MiniLM-L6-v2+lora:000000000000/dynamic-int8-onnx",
        shipped.coef, shipped.intercept, shipped.threshold,
    ).save(stale)  # fmt: skip
    with pytest.raises(ValueError, match="were trained on all-MiniLM-L6-v2\\+lora:000000000000"):
        RequestRouter.load(RouterSettings(weights=stale, pull=False))


# -- the gateway with a router ----------------------------------------------------------------


@pytest.fixture
def routed() -> Iterator[tuple[str, CloudScript, KeywordEncoder]]:
    cloud = CloudScript()
    encoder = KeywordEncoder()

    def make_router(_: RouterSettings) -> RequestRouter:
        return RequestRouter(encoder, weights())

    with serve(fake_cloud(cloud)) as cloud_url, serve(fake_edge(EdgeScript("e1"))) as edge_url:
        settings = settings_for(cloud_url, {"e1": edge_url}, router={"enabled": True})
        with serve(create_app(settings, router=make_router)) as gateway_url:
            yield gateway_url + "/v1", cloud, encoder


def _ask(url: str, question: str, model: str = "pice") -> openai.types.chat.ChatCompletion:
    return openai_client(url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}]
    )


def test_a_direct_question_goes_to_the_cloud_with_the_users_own_messages(
    routed: tuple[str, CloudScript, KeywordEncoder],
) -> None:
    url, cloud, encoder = routed
    completion = _ask(url, "Write code to compute primes")
    assert completion.choices[0].message.content == "Plain cloud answer."
    report = (completion.model_extra or {})["pice"]
    assert (report["mode"], report["reason"]) == ("cloud", "router")
    assert report["router"]["decision"] == "direct"
    assert report["router"]["version"] == "test-v1"
    assert report["router"]["score"] < report["router"]["threshold"]
    # One cloud call, carrying exactly the user's messages: no sketch prompt, no extra call.
    assert len(cloud.requests) == 1
    assert cloud.requests[0]["messages"] == [
        {"role": "user", "content": "Write code to compute primes"}
    ]
    assert encoder.calls == ["Write code to compute primes"]


def test_an_outline_question_is_sketched_and_expanded_on_the_edges(
    routed: tuple[str, CloudScript, KeywordEncoder],
) -> None:
    url, cloud, _ = routed
    completion = _ask(url, "Give me tips for sleeping well")
    report = (completion.model_extra or {})["pice"]
    assert report["mode"] == "progressive"
    assert report["router"]["decision"] == "outline"
    assert [p["edge"] for p in report["points"]] == ["e1", "e1", "e1"]
    # The sketch prompt no longer offers the cloud a direct answer: the router has decided.
    system = cloud.requests[0]["messages"][0]["content"]
    assert "DIRECT" not in system


def test_other_models_do_not_consult_the_router(
    routed: tuple[str, CloudScript, KeywordEncoder],
) -> None:
    url, _, encoder = routed
    cloud_only = _ask(url, "Give me tips", model="pice-cloud")
    assert (cloud_only.model_extra or {})["pice"]["router"] is None
    progressive = _ask(url, "Write code", model="pice-progressive")
    assert (progressive.model_extra or {})["pice"]["mode"] == "progressive"
    assert encoder.calls == []
