"""Pairwise answer judging by a model behind any OpenAI-compatible endpoint.

The prompt follows MT-bench's pairwise template, cut down so that a small judge (the bundled
1.5B by default) answers with a verdict first: it has few tokens to spare and tends to ramble.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from pice.bench.questions import Question
from pice.bench.records import JudgeRecord, Mode
from pice.bench.winrate import Verdict, combine, parse_verdict

JUDGE_SYSTEM = (
    "You are an impartial judge. Compare two assistant answers to the user's question. "
    "Judge helpfulness, relevance, accuracy, depth and clarity. Do not let the order of the "
    "answers or their length decide. Reply with the verdict first: [[A]] if answer A is "
    "better, [[B]] if answer B is better, [[C]] for a tie. Then one short sentence of reason."
)
# Keeps two answers and the question inside a small model's context window.
MAX_ANSWER_CHARS = 3000
JUDGE_MAX_TOKENS = 24


def judge_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    user = (
        f"[User Question]\n{question}\n\n"
        f"[The Start of Assistant A's Answer]\n{answer_a[:MAX_ANSWER_CHARS]}\n"
        "[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{answer_b[:MAX_ANSWER_CHARS]}\n"
        "[The End of Assistant B's Answer]\n\n"
        "Verdict ([[A]], [[B]] or [[C]]):"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


class Judge:
    """Asks one judge model for verdicts; ``base_url`` ends in ``/v1``."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, model: str, api_key: str | None = None
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def verdict(self, question: str, answer_a: str, answer_b: str) -> tuple[Verdict, str]:
        """The verdict on (A, B) and the judge's raw reply; a failed call is ``INVALID``."""
        body: dict[str, Any] = {
            "model": self._model,
            "messages": judge_messages(question, answer_a, answer_b),
            "max_tokens": JUDGE_MAX_TOKENS,
            "temperature": 0.0,
        }
        try:
            response = await self._client.post(self._url, json=body, headers=self._headers)
            response.raise_for_status()
            reply = str(response.json()["choices"][0]["message"]["content"] or "")
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            return Verdict.INVALID, f"judge call failed: {type(exc).__name__}: {exc}"
        return parse_verdict(reply), reply

    async def judge_pair(
        self,
        question: Question,
        candidate: Mode,
        candidate_answer: str,
        baseline: Mode,
        baseline_answer: str,
    ) -> JudgeRecord:
        """Judge the pair in both orders (concurrently) and combine the two verdicts."""
        (first, raw_first), (second, raw_second) = await asyncio.gather(
            self.verdict(question.question, candidate_answer, baseline_answer),
            self.verdict(question.question, baseline_answer, candidate_answer),
        )
        return JudgeRecord(
            question_id=question.id,
            category=question.category,
            suits_points=question.suits_points,
            candidate=candidate,
            baseline=baseline,
            verdict_candidate_first=first.value,
            verdict_candidate_second=second.value,
            outcome=combine(first, second).value,
            raw_first=raw_first,
            raw_second=raw_second,
        )
