"""Preference pairs from the edge's own candidates: which one is chosen, which rejected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice.errors import ModelProvisioningError, UpstreamError
from pice_tune.dataset import PairExample, TuneQuestion, record_from_json, training_record
from pice_tune.distill import raw_cache_path
from pice_tune.filters import Expansion, reject_reason
from pice_tune.preference import (
    CandidateSampling,
    EdgeConfig,
    EdgeSampler,
    JudgeVerdict,
    PairRule,
    build_pair_dataset,
    build_pairs,
    choose_pair,
    judge_targets,
    load_verdicts,
)
from pice_tune.steps import DataOptions, run_data

QUESTION = TuneQuestion("q1", "generic", "How do I keep a fern alive on holiday?", "train")
TITLES = ["Water deeply", "Less sun"]
GOOD = "Soak the pot the evening before you leave, so the soil holds water for days."
ALSO_GOOD = "Give the soil a long soak before you go, so it stays damp for the trip."
GENERIC = "Water is important."


def cand(text: str, logprob: float = -0.5, finish: str = "stop") -> dict[str, Any]:
    return {"text": text, "logprob_mean": logprob, "finish_reason": finish}


def test_a_filtered_candidate_is_rejected_even_when_it_scores_higher() -> None:
    restated = "If you keep a fern alive on holiday, water it deeply."
    pair, why = choose_pair(QUESTION, TITLES, 0, [cand(restated, -0.01), cand(GOOD)], "m")
    assert why is None
    assert pair is not None
    assert pair.chosen == GOOD
    assert pair.rejected == restated
    assert pair.why == "restated_premise"


def test_a_cut_off_candidate_is_never_chosen() -> None:
    cut = "Soak the pot the evening before you leave, so the soil"
    pair, _ = choose_pair(QUESTION, TITLES, 0, [cand(cut, -0.01, "length"), cand(GOOD)], "m")
    assert pair is not None
    assert (pair.chosen, pair.rejected, pair.why) == (GOOD, cut, "truncated")


def test_without_filtered_candidates_the_scores_must_differ_enough() -> None:
    # Two paraphrases score alike: no pair, rather than a coin flip taught as a preference.
    pair, why = choose_pair(QUESTION, TITLES, 0, [cand(GOOD), cand(ALSO_GOOD)], "m")
    assert pair is None
    assert why == "candidates_alike"
    # A third that agrees with neither and is unlikely under the model is the rejected one.
    odd = "Consider buying a cactus instead."
    pair, why = choose_pair(
        QUESTION, TITLES, 0, [cand(GOOD), cand(ALSO_GOOD), cand(odd, -3.0)], "m"
    )
    assert why is None
    assert pair is not None
    assert pair.rejected == odd
    assert pair.why == "score"
    assert pair.chosen in (GOOD, ALSO_GOOD)
    assert pair.chosen_score - pair.rejected_score >= 0.1


def test_a_length_ratio_keeps_score_pairs_to_texts_of_similar_length() -> None:
    short_odd = "Buy a cactus."  # 3 words against GOOD's 15: scores low, and is short
    long_odd = "Consider buying a cactus instead, since it needs far less water than a fern."
    group = [cand(GOOD), cand(ALSO_GOOD), cand(short_odd, -3.0), cand(long_odd, -3.0)]
    # Without the rule the lowest-scored candidate is rejected, whatever its length.
    loose, _ = choose_pair(QUESTION, TITLES, 0, group, "m")
    assert loose is not None
    assert loose.rejected == short_odd
    # With it, the rejected side must have at least 0.75 of the chosen side's words.
    pair, why = choose_pair(QUESTION, TITLES, 0, group, "m", PairRule(length_ratio=0.75))
    assert why is None
    assert pair is not None
    assert (pair.rejected, pair.why) == (long_odd, "score")
    assert pair.chosen_score - pair.rejected_score >= 0.1
    # No candidate of a similar length below the gap: no pair, and the reason says why.
    pair, why = choose_pair(QUESTION, TITLES, 0, group[:3], "m", PairRule(length_ratio=0.75))
    assert (pair, why) == (None, "lengths_apart")


def test_a_length_ratio_leaves_filtered_pairs_alone() -> None:
    too_long = (  # past the prompt's 40 words: filtered, not scored
        "Soak the pot the evening before you leave, then stand it on a tray of wet pebbles "
        "in a cool room away from radiators, group it with other plants to keep the air "
        "humid, and ask a neighbour to check the soil once a week while you are travelling."
    )
    rule = PairRule(length_ratio=0.75)
    pair, _ = choose_pair(QUESTION, TITLES, 0, [cand(GOOD), cand(too_long)], "m", rule)
    assert pair is not None
    assert (pair.rejected, pair.why) == (too_long, "too_long")


def _verdicts(outcome: str, a: int, b: int) -> dict[tuple[str, int], JudgeVerdict]:
    return {(QUESTION.id, 0): JudgeVerdict(QUESTION.id, 0, a, b, outcome, 1.0)}


def test_the_judge_orients_the_pairs_the_filters_leave_open() -> None:
    # Two paraphrases: the score gives no pair (their gap is under MIN_GAP), the judge is asked.
    group = [cand(GOOD), cand(ALSO_GOOD)]
    target = judge_targets(QUESTION, TITLES, 0, group)
    assert target is not None
    assert {target.a, target.b} == {0, 1}
    assert target.score_a >= target.score_b
    best, worst = group[target.a]["text"], group[target.b]["text"]
    # It prefers the score's best: chosen as the score would.
    pair, why = choose_pair(
        QUESTION, TITLES, 0, group, "m", verdicts=_verdicts("win", target.a, target.b)
    )
    assert why is None
    assert pair is not None
    assert (pair.chosen, pair.rejected, pair.why) == (best, worst, "judge")
    # It prefers the other: the pair turns round, scores and all.
    pair, why = choose_pair(
        QUESTION, TITLES, 0, group, "m", verdicts=_verdicts("loss", target.a, target.b)
    )
    assert why is None
    assert pair is not None
    assert (pair.chosen, pair.rejected, pair.why) == (worst, best, "judge")
    assert pair.chosen_score <= pair.rejected_score
    # A tie teaches nothing; a point not judged, or judged on other candidates, gives no pair.
    tie = _verdicts("tie", target.a, target.b)
    assert choose_pair(QUESTION, TITLES, 0, group, "m", verdicts=tie) == (None, "judge_tie")
    assert choose_pair(QUESTION, TITLES, 0, group, "m", verdicts={}) == (None, "not_judged")
    stale = _verdicts("win", target.b, target.a)
    assert choose_pair(QUESTION, TITLES, 0, group, "m", verdicts=stale) == (None, "not_judged")


def test_a_filtered_candidate_is_not_put_to_the_judge() -> None:
    restated = "If you keep a fern alive on holiday, water it deeply."
    group = [cand(restated, -0.01), cand(GOOD)]
    assert judge_targets(QUESTION, TITLES, 0, group) is None
    # Even a verdict for the point does not override the filter's named fault.
    pair, _ = choose_pair(QUESTION, TITLES, 0, group, "m", verdicts=_verdicts("loss", 1, 0))
    assert pair is not None
    assert (pair.chosen, pair.rejected, pair.why) == (GOOD, restated, "restated_premise")
    # Identical texts are not a question for the judge either.
    assert judge_targets(QUESTION, TITLES, 0, [cand(GOOD), cand(GOOD + " ")]) is None


def test_the_judge_target_keeps_the_length_rule() -> None:
    short_odd = "Buy a cactus."
    long_odd = "Consider buying a cactus instead, since it needs far less water than a fern."
    group = [cand(GOOD), cand(ALSO_GOOD), cand(short_odd, -3.0), cand(long_odd, -3.0)]
    loose = judge_targets(QUESTION, TITLES, 0, group)
    assert loose is not None
    assert loose.b == 2
    matched = judge_targets(QUESTION, TITLES, 0, group, PairRule(length_ratio=0.75))
    assert matched is not None
    assert matched.b == 3


def test_verdicts_load_skipping_failed_calls_and_cut_lines(tmp_path: Any) -> None:
    path = tmp_path / "verdicts.jsonl"
    rows = [
        {"question_id": "q1", "index": 0, "a": 0, "b": 1, "outcome": "tie", "margin": 0.0},
        {"question_id": "q1", "index": 0, "a": 0, "b": 1, "outcome": "win", "margin": 1.5},
        {"question_id": "q1", "index": 1, "a": 2, "b": 0, "outcome": "loss", "failed": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"question_id": "q2", "ind')
    verdicts = load_verdicts(path)
    assert list(verdicts) == [("q1", 0)]
    assert verdicts[("q1", 0)] == JudgeVerdict("q1", 0, 0, 1, "win", 1.5)


def test_no_pair_when_every_candidate_is_filtered() -> None:
    pair, why = choose_pair(QUESTION, TITLES, 0, [cand(""), cand("is good for it.")], "m")
    assert pair is None
    assert why == "no_good_candidate"


def test_the_chosen_candidate_always_passes_the_data_filters() -> None:
    raw = {
        "titles": TITLES,
        "candidates": [
            [cand(GOOD), cand(""), cand(GENERIC, -0.1)],
            [cand("Keep it out of direct sun so the soil dries slowly."), cand("is shade.")],
        ],
    }
    pairs, counts = build_pairs(QUESTION, raw, "edge-model")
    assert len(pairs) == 2
    assert sum(counts.values()) == 2
    for pair in pairs:
        expansion = Expansion(QUESTION.question, tuple(TITLES), pair.index, pair.chosen, "stop")
        assert reject_reason(expansion) is None
        assert pair.chosen != pair.rejected
        assert pair.model == "edge-model"


def test_a_pair_round_trips_and_renders_the_edges_prompt() -> None:
    pair, _ = choose_pair(QUESTION, TITLES, 1, [cand(GOOD), cand("is shade.")], "m")
    assert pair is not None
    assert record_from_json(json.loads(json.dumps(pair.to_json()))) == pair
    record = training_record(pair)
    assert record["prefix"] == "2. **Less sun**:"
    assert record["chosen"] == " " + GOOD + "\n"
    assert record["rejected"] == " is shade.\n"
    assert "completion" not in record
    assert isinstance(pair, PairExample)


def event_stream(events: list[dict[str, Any]]) -> httpx.Response:
    """What the agent's ``/v1/expand`` answers: one ``data:`` event each, then ``[DONE]``."""
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    body = "".join([*lines, "data: [DONE]\n\n"]).encode()
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def point_done(point: int, candidate: int, text: str) -> dict[str, Any]:
    return {
        "type": "point_done",
        "point": point,
        "candidate": candidate,
        "finish_reason": "stop",
        "text": text,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "logprob_sum": -2.0,
        "logprob_mean": -0.4,
        "ttft_ms": 1.0,
        "duration_ms": 2.0,
    }


def scripted_sampler(
    handler: Callable[[httpx.Request], httpx.Response],
    sampling: CandidateSampling | None = None,
) -> EdgeSampler:
    """A sampler whose agent is ``handler`` (a scripted ``/v1/expand``)."""
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return EdgeSampler(
        "m", sampling or CandidateSampling(k=2), lambda: EdgeConfig("http://edge", "m"), client
    )


def test_the_sampler_asks_in_groups_that_fit_the_agents_sequences() -> None:
    asked: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        events = [
            point_done(p, c, f"Body {p}.{c}.")
            for p in body["points"]
            for c in range(body["candidates"])
        ]
        return event_stream(events)

    sampler = scripted_sampler(handler, CandidateSampling(k=3, max_sequences=7))
    titles = ["A", "B", "C", "D", "E"]
    raw = sampler.candidates(QUESTION, titles)
    # 7 sequences hold two points of three candidates: points asked 2 + 2 + 1.
    assert [b["points"] for b in asked] == [[0, 1], [2, 3], [4]]
    assert all(b["temperature"] == 0.0 and b["candidate_temperature"] == 0.8 for b in asked)
    assert [[c["text"] for c in point] for point in raw["candidates"]][4] == [
        "Body 4.0.",
        "Body 4.1.",
        "Body 4.2.",
    ]


def test_the_sampler_reports_an_edge_error_in_the_stream_and_a_refusal() -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        error = {"type": "error", "error": {"message": "engine stopped", "type": "server_error"}}
        return event_stream([error])

    with pytest.raises(UpstreamError, match="engine stopped"):
        scripted_sampler(failing).candidates(QUESTION, TITLES)

    def refusing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "needs 9 sequences"}})

    with pytest.raises(UpstreamError, match="answered 400"):
        scripted_sampler(refusing).candidates(QUESTION, TITLES)


def test_an_edge_is_opened_only_for_questions_the_cache_lacks(tmp_path: Path) -> None:
    second = TuneQuestion("q2", "generic", "How do I pack a suitcase?", "train")
    outlines = {"q1": TITLES, "q2": ["Roll clothes"]}
    opened: list[str] = []
    asked: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body["sketch"])
        texts = [GOOD, ALSO_GOOD]
        return event_stream([point_done(p, c, texts[c]) for p in body["points"] for c in range(2)])

    def sampler() -> EdgeSampler:
        def connect() -> EdgeConfig:
            opened.append("edge")
            return EdgeConfig("http://edge", "m")

        client = httpx.Client(transport=httpx.MockTransport(handler))
        return EdgeSampler("m", CandidateSampling(k=2), connect, client)

    out = tmp_path / "pairs.jsonl"
    first = build_pair_dataset(sampler(), [QUESTION], outlines, out, manifest={})
    assert (opened, asked, first["edge_url"]) == (["edge"], [TITLES], "http://edge")
    # Every candidate cached: the same step again asks nothing and opens no edge.
    again = build_pair_dataset(sampler(), [QUESTION], outlines, out, manifest={})
    assert (opened, asked, again["edge_url"]) == (["edge"], [TITLES], None)
    assert again["data_sha256"] == first["data_sha256"]
    # A question the cache lacks opens it, once, and asks only that question.
    build_pair_dataset(sampler(), [QUESTION, second], outlines, out, manifest={})
    assert (opened, asked) == (["edge", "edge"], [TITLES, ["Roll clothes"]])


def test_a_verdicts_file_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    outlines = tmp_path / "data-v1.jsonl"
    raw_cache_path(outlines).write_text(json.dumps({"question_id": "q1"}) + "\n")
    missing = tmp_path / "verdicts.jsonl"
    options = DataOptions(
        out=tmp_path / "pairs.jsonl", role="preference", outlines=outlines, verdicts=missing
    )
    with pytest.raises(ModelProvisioningError, match="no verdicts file"):
        run_data(options)
    assert not (tmp_path / "pairs.jsonl").exists()
