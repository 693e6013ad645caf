"""Pairwise answer judging by a model behind any OpenAI-compatible endpoint.

The judge grades both answers 1–10 in one short, fixed-format reply (an MT-bench-style rubric,
cut down). Asked for a bare verdict, the bundled 1.5B picks a position rather than an answer
(``[[B]]`` whatever the order); two grades carry a margin, and a margin survives the swap of
the orders when the answers really differ (see :mod:`pice_bench.winrate`). With ``expected``
grades (the default) the judge is also asked for token log-probabilities, and each grade is
read as an expectation over the digits it could have written (:mod:`pice_bench.expected_grades`);
a server that returns none leaves the integer grades in charge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

import httpx

from pice_bench.expected_grades import expected_grades
from pice_bench.questions import Question
from pice_bench.records import JudgeRecord, Mode
from pice_bench.winrate import Judgment, Outcome, Verdict, combine, combined_margin

JUDGE_SYSTEM = (
    "You are an impartial judge. Grade each of two assistant answers to the user's question "
    "on a scale of 1 to 10 for helpfulness, relevance, accuracy, completeness and clarity. "
    "1-2: wrong, off-topic, empty, or cut off mid-sentence. 3-5: partly correct or incomplete. "
    "6-8: correct and relevant but could be more complete or clearer. 9-10: correct, complete "
    "and clear. Grade each answer on its own merits; do not let the order or the length of the "
    "answers decide. Reply with exactly two lines and nothing else:\n"
    "Score A: <n>\nScore B: <n>"
)
# Keeps two answers and the question inside a small model's context window.
MAX_ANSWER_CHARS = 3000
# Two grade lines are about a dozen tokens, twice that with markdown ("**Score A:** 7/10");
# a judge that starts explaining instead is cut off early.
JUDGE_MAX_TOKENS = 24
# What a judge call that failed (after its retries) leaves as its raw reply: never a verdict.
JUDGE_CALL_FAILED = "judge call failed"
# Statuses of a judge that is still loading or busy: retried, with doubling waits.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Alternatives asked per token for expected grades: the ten grades fit with room for the
# non-digit tokens (" ", "*") a judge may also consider there.
JUDGE_TOP_LOGPROBS = 20


def answer_pair(question: str, answer_a: str, answer_b: str) -> str:
    """The question and both answers, as the judge reads them (MT-Bench's pairwise layout)."""
    return (
        f"[User Question]\n{question}\n\n"
        f"[The Start of Assistant A's Answer]\n{answer_a[:MAX_ANSWER_CHARS]}\n"
        "[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{answer_b[:MAX_ANSWER_CHARS]}\n"
        "[The End of Assistant B's Answer]\n\n"
    )


def judge_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    user = answer_pair(question, answer_a, answer_b) + (
        "Grade both answers, in exactly this format:\nScore A: <n>\nScore B: <n>"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


class Judge:
    """Asks one judge model for judgments; ``base_url`` ends in ``/v1``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        expected: bool = True,
        retries: int = 6,
        backoff_s: float = 1.0,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._expected = expected
        self._retries = retries
        self._backoff_s = backoff_s
        # Set once a call failed after all its retries: the judge is down, and each later call
        # is tried once (a dead judge must not cost a minute of waits per call).
        self._down = False

    async def judgment(self, question: str, answer_a: str, answer_b: str) -> tuple[Judgment, str]:
        """The judgment on (A, B) and the judge's raw reply.

        A judge that is loading or busy (a connection error, 429, 5xx) is asked again, after
        1, 2, 4, ... s (``retries`` times); a call that still fails is ``INVALID`` with the raw
        reply ``judge call failed: ...``, which :func:`failed_calls` counts, and from then on
        the judge is taken as down: each later call is tried once."""
        body: dict[str, Any] = {
            "model": self._model,
            "messages": judge_messages(question, answer_a, answer_b),
            "max_tokens": JUDGE_MAX_TOKENS,
            "temperature": 0.0,
        }
        if self._expected:
            body |= {"logprobs": True, "top_logprobs": JUDGE_TOP_LOGPROBS}
        try:
            response = await self._post(body)
            choice = response.json()["choices"][0]
            reply = str(choice["message"]["content"] or "")
            content = (choice.get("logprobs") or {}).get("content") or []
        except (httpx.HTTPError, ValueError, KeyError, IndexError, AttributeError) as exc:
            return Judgment(Verdict.INVALID), f"{JUDGE_CALL_FAILED}: {type(exc).__name__}: {exc}"
        return Judgment.parse(reply, expected_grades(content) if content else None), reply

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        retries = 0 if self._down else self._retries
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = await self._client.post(self._url, json=body, headers=self._headers)
                if response.status_code not in _RETRY_STATUSES:
                    return response.raise_for_status()
                if last:
                    self._down = True
                    return response.raise_for_status()
            except httpx.TransportError:
                if last:
                    self._down = True
                    raise
            await asyncio.sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def grade(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        """The judgment alone (see :meth:`judgment`)."""
        return (await self.judgment(question, answer_a, answer_b))[0]

    async def judge_pair(
        self,
        question: Question,
        candidate: Mode,
        candidate_answer: str,
        baseline: Mode,
        baseline_answer: str,
    ) -> JudgeRecord:
        """Judge the pair in both orders (concurrently) and combine the two judgments.

        Two answers of the same text are a tie without asking the judge: its verdict on them
        could only measure its position bias, which :func:`judgment_diagnostics` reports from
        the pairs that differ.
        """
        record = partial(
            JudgeRecord,
            question_id=question.id,
            category=question.category,
            suits_points=question.suits_points,
            candidate=candidate,
            baseline=baseline,
        )
        if candidate_answer.strip() == baseline_answer.strip():
            tie = Verdict.TIE.value
            return record(
                verdict_candidate_first=tie,
                verdict_candidate_second=tie,
                outcome=Outcome.TIE.value,
                raw_first="",
                raw_second="",
                identical=True,
            )
        (first, raw_first), (second, raw_second) = await asyncio.gather(
            self.judgment(question.question, candidate_answer, baseline_answer),
            self.judgment(question.question, baseline_answer, candidate_answer),
        )
        return record(
            verdict_candidate_first=first.verdict.value,
            verdict_candidate_second=second.verdict.value,
            outcome=combine(first, second).value,
            raw_first=raw_first,
            raw_second=raw_second,
            scores_candidate_first=first.scores,
            scores_candidate_second=second.scores,
            margin=combined_margin(first, second),
            expected_candidate_first=first.expected,
            expected_candidate_second=second.expected,
        )


def failed_calls(records: Sequence[JudgeRecord]) -> int:
    """Judge calls of ``records`` that failed (counted as ties in their order): a figure to
    report beside every win rate, and to rerun for when it is not 0."""
    return sum(
        raw.startswith(JUDGE_CALL_FAILED) for r in records for raw in (r.raw_first, r.raw_second)
    )
