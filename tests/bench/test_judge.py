"""The pairwise judge against scripted OpenAI-protocol judges (``httpx.MockTransport``)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from pice_bench.judge import JUDGE_MAX_TOKENS, Judge, failed_calls
from pice_bench.questions import Question
from pice_bench.records import JudgeRecord, Mode

QUESTION = Question(id="q1", category="generic", question="Why is the sky blue?", suits_points=True)
GOOD = "Air scatters blue sunlight more than red (Rayleigh scattering)."
POOR = "Because it reflects the"
_ANSWERS = re.compile(
    r"Assistant A's Answer\]\n(.*?)\n\[The End.*?Assistant B's Answer\]\n(.*?)\n", re.S
)


def answers_shown(body: dict[str, Any]) -> tuple[str, str]:
    """The answers in positions A and B of a judge request."""
    match = _ANSWERS.search(body["messages"][-1]["content"])
    assert match is not None
    return match.group(1), match.group(2)


def completion(text: str) -> httpx.Response:
    return httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": text}}]}
    )


@asynccontextmanager
async def judge_for(
    reply: Callable[[str, str], str], seen: list[httpx.Request] | None = None
) -> AsyncIterator[Judge]:
    """A ``Judge`` whose model replies ``reply(answer_a, answer_b)``."""

    def respond(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return completion(reply(*answers_shown(json.loads(request.content))))

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        yield Judge(client, "http://judge/v1/", "judge-model", api_key="k")


def grade(answer: str) -> int:
    return 8 if answer == GOOD else 3


def grades(a: str, b: str) -> str:
    """A fair judge: the good answer gets 8, the poor one 3, wherever they are shown."""
    return f"Score A: {grade(a)}\nScore B: {grade(b)}"


async def judge_good_vs_poor(judge: Judge) -> JudgeRecord:
    return await judge.judge_pair(QUESTION, Mode.PICE, GOOD, Mode.CLOUD, POOR)


async def test_grades_both_orders_and_records_them() -> None:
    seen: list[httpx.Request] = []
    async with judge_for(grades, seen) as judge:
        record = await judge_good_vs_poor(judge)

    assert [answers_shown(json.loads(r.content)) for r in seen] == [(GOOD, POOR), (POOR, GOOD)]
    body = json.loads(seen[0].content)
    assert (body["model"], body["max_tokens"], body["temperature"]) == (
        "judge-model", JUDGE_MAX_TOKENS, 0.0,
    )  # fmt: skip
    assert str(seen[0].url) == "http://judge/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer k"

    assert record.outcome == "win"
    assert (record.verdict_candidate_first, record.verdict_candidate_second) == ("A", "B")
    assert (record.scores_candidate_first, record.scores_candidate_second) == ((8, 3), (3, 8))
    assert record.margin == 10
    assert record.raw_first == "Score A: 8\nScore B: 3"
    assert record.raw_second == "Score A: 3\nScore B: 8"
    as_json = json.loads(json.dumps(record.to_json()))
    assert as_json["scores_candidate_first"] == [8, 3]
    assert as_json["outcome"] == "win"


async def test_the_baseline_can_win() -> None:
    async with judge_for(grades) as judge:
        record = await judge.judge_pair(QUESTION, Mode.PICE, POOR, Mode.CLOUD, GOOD)
    assert (record.outcome, record.margin) == ("loss", -10)


async def test_a_bonus_for_the_first_position_cancels() -> None:
    def biased(a: str, b: str) -> str:
        return f"Score A: {grade(a) + 2}\nScore B: {grade(b)}"

    async with judge_for(biased) as judge:
        # The five-point gap between the answers still decides...
        record = await judge_good_vs_poor(judge)
        assert (record.outcome, record.margin) == ("win", 10)
        assert (record.scores_candidate_first, record.scores_candidate_second) == ((10, 3), (5, 8))
        # ...and with nothing between the answers, the bonus alone is a tie.
        record = await judge.judge_pair(QUESTION, Mode.PICE, POOR, Mode.CLOUD, POOR + " sea")
        assert (record.outcome, record.margin) == ("tie", 0)


async def test_identical_answers_tie_without_asking_the_judge() -> None:
    seen: list[httpx.Request] = []
    async with judge_for(lambda a, b: "Score A: 9\nScore B: 2", seen) as judge:
        record = await judge.judge_pair(QUESTION, Mode.PICE_AUTO, GOOD + "\n", Mode.CLOUD, GOOD)
        assert seen == []
        assert (record.outcome, record.margin, record.identical) == ("tie", 0, True)
        # One character apart is not identical: the judge is asked.
        record = await judge.judge_pair(QUESTION, Mode.PICE_AUTO, GOOD + "!", Mode.CLOUD, GOOD)
    assert len(seen) == 2
    assert not record.identical


async def test_a_judge_that_always_prefers_a_by_the_same_amount_ties() -> None:
    async with judge_for(lambda a, b: "Score A: 7\nScore B: 5") as judge:
        record = await judge_good_vs_poor(judge)
    assert (record.verdict_candidate_first, record.verdict_candidate_second) == ("A", "A")
    assert (record.outcome, record.margin) == ("tie", 0)


async def test_without_grades_the_verdict_is_read() -> None:
    async with judge_for(lambda a, b: "[[A]]" if a == GOOD else "[[B]]") as judge:
        record = await judge_good_vs_poor(judge)
    assert (record.outcome, record.margin) == ("win", 2)
    assert (record.scores_candidate_first, record.scores_candidate_second) == (None, None)


@pytest.mark.parametrize("reply", ["I think both are fine.", "Score A: 9", ""])
async def test_an_unreadable_reply_is_invalid_and_a_tie(reply: str) -> None:
    async with judge_for(lambda a, b: reply) as judge:
        record = await judge_good_vs_poor(judge)
    assert record.verdict_candidate_first == record.verdict_candidate_second == "invalid"
    assert (record.outcome, record.margin) == ("tie", 0)
    assert record.raw_first == reply


async def test_a_failed_call_is_retried_then_invalid_kept_and_counted() -> None:
    calls: list[httpx.Request] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(unavailable)) as client:
        judge = Judge(client, "http://judge/v1", "judge-model", retries=2, backoff_s=0.001)
        record = await judge_good_vs_poor(judge)
        assert len(calls) == 2 * 3, "both orders (at once), each asked three times"
        # Down now: the next pair's calls are tried once each, not three times.
        await judge_good_vs_poor(judge)
        assert len(calls) == 2 * 3 + 2
    assert (record.verdict_candidate_first, record.outcome) == ("invalid", "tie")
    assert record.raw_first.startswith("judge call failed: HTTPStatusError")
    assert failed_calls([record]) == 2


async def test_a_judge_still_loading_is_asked_again_and_its_verdict_counts() -> None:
    # A llama.cpp or vLLM server answers 503 while it loads, and a connection may be refused.
    answers: list[str] = []

    def loading(request: httpx.Request) -> httpx.Response:
        answers.append("x")
        if len(answers) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(answers) <= 3:
            return httpx.Response(503)
        return completion(grades(*answers_shown(json.loads(request.content))))

    async with httpx.AsyncClient(transport=httpx.MockTransport(loading)) as client:
        judge = Judge(client, "http://judge/v1", "judge-model", backoff_s=0.001)
        record = await judge_good_vs_poor(judge)
    assert record.outcome == "win"
    assert failed_calls([record]) == 0


async def test_a_request_the_judge_refuses_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"error": {"message": "bad"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        judge = Judge(client, "http://judge/v1", "judge-model", backoff_s=0.001)
        record = await judge_good_vs_poor(judge)
    assert len(calls) == 2
    assert failed_calls([record]) == 2
