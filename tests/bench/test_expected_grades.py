"""Expected grades: the judge's digit probabilities turned into continuous grades."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from pice_bench.expected_grades import expected_grades
from pice_bench.judge import JUDGE_TOP_LOGPROBS, Judge
from pice_bench.questions import Question
from pice_bench.records import Mode
from pice_bench.winrate import EXPECTED_TIE_MARGIN, Judgment, Outcome, Verdict, combine

QUESTION = Question(id="q1", category="generic", question="Why is the sky blue?", suits_points=True)


def token(text: str, alternatives: dict[str, float] | None = None) -> dict[str, Any]:
    """A ``logprobs.content`` entry: ``text`` chosen, ``alternatives`` by probability."""
    alts = alternatives or {text: 1.0}
    return {
        "token": text,
        "logprob": math.log(alts.get(text, 1.0)),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alts.items()],
    }


def reply(
    a: dict[str, float], b: dict[str, float], chosen: tuple[str, str]
) -> list[dict[str, Any]]:
    """Tokens of "Score A: <a>\\nScore B: <b>" as Qwen writes them."""
    return [
        token("Score"),
        token(" A"),
        token(":"),
        token(" " + chosen[0], {" " + k: v for k, v in a.items()}),
        token("\n"),
        token("Score"),
        token(" B"),
        token(":"),
        token(" " + chosen[1], {" " + k: v for k, v in b.items()}),
    ]


def test_each_grade_is_the_mean_over_the_digits_the_judge_could_write() -> None:
    grades = expected_grades(reply({"8": 0.6, "7": 0.4}, {"8": 0.9, "9": 0.1}, ("8", "8")))
    assert grades is not None
    assert grades == pytest.approx((7.6, 8.1))


def test_non_digit_alternatives_are_left_out_and_the_rest_renormalised() -> None:
    entries = reply({"8": 0.5, "7": 0.25, "*": 0.25}, {"5": 1.0}, ("8", "5"))
    assert expected_grades(entries) == pytest.approx((8 * 2 / 3 + 7 / 3, 5.0))


def test_a_one_followed_by_zero_is_a_ten() -> None:
    entries = [
        token("Score A:"),
        token("1", {"1": 0.7, "9": 0.3}),
        token("0"),
        token("\nScore B: "),
        token("1", {"1": 0.8, "2": 0.2}),
    ]
    assert expected_grades(entries) == pytest.approx((0.7 * 10 + 0.3 * 9, 0.8 * 1 + 0.2 * 2))


def test_a_reply_without_both_grades_has_none() -> None:
    assert expected_grades([token("Answer"), token(" A"), token(" is better")]) is None
    assert expected_grades(reply({"8": 1.0}, {}, ("8", "x"))[:5]) is None


def test_expected_margins_need_to_clear_the_dead_zone() -> None:
    lean = EXPECTED_TIE_MARGIN / 2  # per order: the sum just reaches the zone's edge
    first = Judgment(Verdict.TIE, (8, 8), (8.0 + lean, 8.0))
    second = Judgment(Verdict.TIE, (8, 8), (8.0, 8.0 + lean))
    assert combine(first, second) is Outcome.TIE
    second = Judgment(Verdict.TIE, (8, 8), (8.0, 8.0 + lean + 0.01))
    assert combine(first, second) is Outcome.WIN
    # A position bonus alone (A always +0.4) cancels.
    assert (
        combine(Judgment(Verdict.A, (8, 8), (8.4, 8.0)), Judgment(Verdict.A, (8, 8), (8.4, 8.0)))
        is Outcome.TIE
    )
    # Integer grades keep the plain sign rule.
    assert combine(Judgment(Verdict.A, (8, 7)), Judgment(Verdict.TIE, (8, 8))) is Outcome.WIN


async def test_the_judge_asks_for_probabilities_and_records_expected_grades() -> None:
    seen: list[dict[str, Any]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        first = len(seen) == 1  # candidate shown as A: it leans to A; then to B
        a, b = (
            ({"8": 0.9, "7": 0.1}, {"8": 0.2, "7": 0.8})
            if first
            else ({"8": 0.3, "7": 0.7}, {"8": 1.0})
        )
        content = reply(a, b, ("8", "8"))
        message = {"role": "assistant", "content": "Score A: 8\nScore B: 8"}
        return httpx.Response(
            200, json={"choices": [{"message": message, "logprobs": {"content": content}}]}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        judge = Judge(client, "http://judge/v1", "m")
        record = await judge.judge_pair(QUESTION, Mode.PICE, "x", Mode.CLOUD, "y")
    assert all(b["logprobs"] is True and b["top_logprobs"] == JUDGE_TOP_LOGPROBS for b in seen)
    assert record.expected_candidate_first == pytest.approx((7.9, 7.2))
    assert record.expected_candidate_second == pytest.approx((7.3, 8.0))
    assert record.margin == pytest.approx(0.7 + 0.7)
    assert record.outcome == "win"  # the integer grades alone said 8 / 8: a tie


async def test_integer_grades_when_asked_or_when_the_server_gives_no_probabilities() -> None:
    seen: list[dict[str, Any]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        message = {"role": "assistant", "content": "Score A: 8\nScore B: 8"}
        return httpx.Response(200, json={"choices": [{"message": message}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        plain = await Judge(client, "http://judge/v1", "m").judgment("q", "x", "y")
        integer = await Judge(client, "http://judge/v1", "m", expected=False).judgment(
            "q", "x", "y"
        )
    assert plain[0] == Judgment(Verdict.TIE, (8, 8))
    assert integer[0] == Judgment(Verdict.TIE, (8, 8))
    assert "logprobs" in seen[0]
    assert "logprobs" not in seen[1]
