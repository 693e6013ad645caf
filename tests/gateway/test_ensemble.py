"""The ensemble's scoring core: which candidate of a point wins, and why."""

from __future__ import annotations

import pytest

from pice_gateway.progressive.ensemble import (
    Candidate,
    repetition,
    rouge1_f1,
    score_candidates,
    winner,
)

TITLE = "Limit caffeine"
QUESTION = "How can I sleep better at night?"


def cand(index: int, text: str, logprob: float | None = -0.5, finish: str = "stop") -> Candidate:
    return Candidate(index, text, logprob, finish)


def choose(*candidates: Candidate) -> int:
    return winner(score_candidates(candidates, title=TITLE, question=QUESTION))


def test_rouge1_is_symmetric_clipped_and_zero_for_nothing_shared() -> None:
    assert rouge1_f1(["a", "b"], ["b", "a"]) == 1.0
    assert rouge1_f1(["a", "a", "b"], ["a", "c"]) == pytest.approx(0.4)
    assert rouge1_f1(["a"], ["b"]) == rouge1_f1([], ["b"]) == 0.0


def test_the_candidate_agreeing_with_the_others_wins_over_a_more_confident_outlier() -> None:
    outlier = cand(0, "Coffee beans grow on tropical farms across Brazil and Vietnam.", -0.2)
    consensus = cand(1, "Avoid coffee and tea after noon; caffeine stays in the body for hours.")
    similar = cand(2, "Skip coffee after lunch, since caffeine lingers for hours and keeps you up.")
    assert choose(outlier, consensus, similar) in (1, 2)
    scored = score_candidates([outlier, consensus, similar], title=TITLE, question=QUESTION)
    assert scored[0].agreement < min(scored[1].agreement, scored[2].agreement)


def test_confidence_decides_between_two_otherwise_equal_candidates() -> None:
    text = "Avoid coffee after noon; it stays in the body for hours."
    assert choose(cand(0, text, -0.9), cand(1, text, -0.3)) == 1


def test_a_truncated_candidate_loses_to_a_finished_one() -> None:
    text = "Avoid coffee after noon; caffeine stays in the body for hours"
    assert choose(cand(0, text, -0.3, finish="length"), cand(1, text + ".", -0.5)) == 1


def test_an_empty_or_failed_candidate_is_never_chosen_while_another_is_eligible() -> None:
    good = cand(2, "Avoid coffee after noon.", -1.5)
    assert choose(cand(0, "", -0.01), cand(1, "Avoid coffee.", -0.1, finish="error"), good) == 2
    scored = score_candidates([cand(0, "  ", 0.0), good], title=TITLE, question=QUESTION)
    assert [s.eligible for s in scored] == [False, True]


def test_a_body_restating_the_title_and_question_is_penalised() -> None:
    restating = cand(0, "Limit caffeine to sleep better at night.", -0.2)
    useful = cand(1, "Avoid coffee after noon; caffeine lingers for hours.", -0.6)
    scored = score_candidates([restating, useful], title=TITLE, question=QUESTION)
    assert scored[0].restatement == 1.0
    assert scored[1].restatement == 0.0
    # Overlap with the premise alone would have chosen the restatement.
    assert scored[0].relevance > scored[1].relevance
    assert winner(scored) == 1


def test_repeated_ngrams_are_penalised() -> None:
    loop = "drink less coffee drink less coffee drink less coffee drink less coffee"
    assert repetition(loop) > 0.5
    assert repetition("Avoid coffee after noon.") == 0.0
    assert choose(cand(0, loop, -0.1), cand(1, "Drink less coffee after lunch.", -0.6)) == 1


def test_ties_go_to_the_lowest_index_and_nothing_eligible_still_chooses() -> None:
    text = "Avoid coffee after noon."
    assert choose(cand(2, text), cand(1, text), cand(3, text)) == 1
    assert choose(cand(1, "", finish="stop"), cand(0, "", finish="length")) == 0
    with pytest.raises(ValueError, match="no candidates"):
        winner([])


def test_missing_logprobs_do_not_decide() -> None:
    scored = score_candidates(
        [cand(0, "Avoid coffee.", None), cand(1, "Avoid coffee.", None)], title=TITLE, question=""
    )
    assert scored[0].confidence == scored[1].confidence == 0.0
    assert scored[0].score == scored[1].score


def test_confidence_weighs_nothing_between_candidates_of_different_models() -> None:
    text = "Avoid coffee after noon; it stays in the body for hours."
    sure = Candidate(0, text, -0.3, "stop", model="qwen-0.5b")
    unsure = Candidate(1, text, -0.9, "stop", model="qwen-1.5b")
    scored = score_candidates([sure, unsure], title=TITLE, question=QUESTION)
    # Reported as measured, but one model's log-probabilities say nothing of another's text:
    # equal texts score equal, and the tie goes to the lowest index.
    assert scored[0].confidence > scored[1].confidence
    assert scored[0].score == scored[1].score
    assert winner(scored) == 0
    swapped = score_candidates(
        [Candidate(0, text, -0.9, "stop", model="a"), Candidate(1, text, -0.3, "stop", model="b")],
        title=TITLE,
        question=QUESTION,
    )
    assert winner(swapped) == 0
    # One model (or none named): confidence decides again.
    same = [
        Candidate(0, text, -0.9, "stop", model="a"),
        Candidate(1, text, -0.3, "stop", model="a"),
    ]
    assert winner(score_candidates(same, title=TITLE, question=QUESTION)) == 1
    unnamed = [Candidate(0, text, -0.9, "stop", model="a"), Candidate(1, text, -0.3, "stop")]
    assert winner(score_candidates(unnamed, title=TITLE, question=QUESTION)) == 1
