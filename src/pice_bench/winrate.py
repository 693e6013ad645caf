"""Pairwise judging arithmetic: judgments in both orders, outcomes, net win rates.

Each pair (candidate answer, baseline answer) is judged twice, once with the candidate shown as
answer A and once as answer B, to cancel the judge's position bias. In each order the judge
grades both answers 1–10; the order's *margin* is the candidate's grade minus the baseline's.
The question's outcome is the sign of the two margins' sum. A judge that adds the same bonus to
whichever answer comes first shifts the two margins by the same amount in opposite directions,
so the bonus cancels and only a difference that survives the swap decides the outcome.

A reply without both grades falls back to a verdict (``[[A]]`` / ``[[B]]`` / ``[[C]]``), which
counts as a one-point margin; a reply with neither is invalid and counts as a tie in its order.
With verdicts only this is the convention of the Skeleton-of-Thought paper.

When the judge's server returns token probabilities, each grade is the expectation over the
digits the judge could have written (:mod:`pice_bench.expected_grades`): margins become
continuous, and a pair counts as a tie only while the summed margin stays within
:data:`EXPECTED_TIE_MARGIN`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """What the judge said about the answers in the order it saw them."""

    A = "A"
    B = "B"
    TIE = "tie"
    INVALID = "invalid"


class Outcome(StrEnum):
    """The candidate's result on one question, both orders combined."""

    WIN = "win"
    LOSS = "loss"
    TIE = "tie"


_BRACKETED = re.compile(r"\[\[\s*(A|B|C|TIE)\s*\]\]", re.IGNORECASE)
# A bare leading letter, but not the "A: 7" of a grade line whose other grade is missing.
_LEADING = re.compile(
    r"^\W*(?:answer\s+|assistant\s+)?(A|B|TIE|C)\b(?![\s*]*[:=]\s*\**\s*\d)", re.IGNORECASE
)
# "Score A: 7", "**Score for Assistant B:** 8/10", "Answer A - 7", or a line starting "A: 7".
_SCORE = re.compile(
    r"(?:\bscore\s*(?:for\s+)?(?:answer\s+|assistant\s+)?|\b(?:answer|assistant)\s+|^[\W_]*)"
    r"(A|B)\b[\s*]*[:=-]?[\s*]*(\d{1,2})(?![\d.])",
    re.IGNORECASE | re.MULTILINE,
)
MIN_SCORE, MAX_SCORE = 1, 10
# With expected grades, a summed two-order margin within this many grade points is a tie:
# a quarter of a grade per order. Fixed before any run was judged this way, not tuned.
EXPECTED_TIE_MARGIN = 0.5


def parse_verdict(text: str) -> Verdict:
    """The judge's verdict from its reply: ``[[A]]``, ``[[B]]``, ``[[C]]`` (tie) or a bare
    leading ``A`` / ``B`` / ``tie``. Anything else is ``INVALID`` (counted as a tie)."""
    match = _BRACKETED.search(text) or _LEADING.search(text.strip())
    if match is None:
        return Verdict.INVALID
    token = match.group(1).upper()
    if token == "A":
        return Verdict.A
    if token == "B":
        return Verdict.B
    return Verdict.TIE


def parse_scores(text: str) -> tuple[int, int] | None:
    """The grades (answer A, answer B) from a reply such as ``Score A: 7 / Score B: 4``; the
    first grade given for each letter counts. ``None`` unless both are there and in 1–10."""
    found: dict[str, int] = {}
    for match in _SCORE.finditer(text):
        found.setdefault(match.group(1).upper(), int(match.group(2)))
    a, b = found.get("A"), found.get("B")
    if a is None or b is None or not all(MIN_SCORE <= s <= MAX_SCORE for s in (a, b)):
        return None
    return a, b


@dataclass(frozen=True)
class Judgment:
    """The judge's reply in one order, read: grades when it gave both, else only a verdict."""

    verdict: Verdict
    scores: tuple[int, int] | None = None  # (answer A, answer B)
    # The grades' expectations under the judge's token probabilities, when its server gave them.
    expected: tuple[float, float] | None = None

    @classmethod
    def parse(cls, text: str, expected: tuple[float, float] | None = None) -> Judgment:
        scores = parse_scores(text)
        if scores is None:
            return cls(parse_verdict(text), expected=expected)
        a, b = scores
        return cls(Verdict.A if a > b else Verdict.B if b > a else Verdict.TIE, scores, expected)

    def margin(self, *, candidate_is_a: bool) -> float:
        """The candidate's grade minus the baseline's (expected grades when there are any); a
        verdict alone counts as ±1, a tie or an invalid reply as 0."""
        diff: float
        if self.expected is not None:
            diff = self.expected[0] - self.expected[1]
        elif self.scores is not None:
            diff = self.scores[0] - self.scores[1]
        else:
            diff = {Verdict.A: 1, Verdict.B: -1}.get(self.verdict, 0)
        return diff if candidate_is_a else -diff


def combined_margin(candidate_first: Judgment, candidate_second: Judgment) -> float:
    """The sum of the margins of the two orders: candidate shown as A, then shown as B."""
    return candidate_first.margin(candidate_is_a=True) + candidate_second.margin(
        candidate_is_a=False
    )


def combine(candidate_first: Judgment, candidate_second: Judgment) -> Outcome:
    """The outcome from the two orders: the sign of their summed margin, which must clear
    :data:`EXPECTED_TIE_MARGIN` when both orders have expected grades."""
    total = combined_margin(candidate_first, candidate_second)
    both_expected = candidate_first.expected is not None and candidate_second.expected is not None
    dead_zone = EXPECTED_TIE_MARGIN if both_expected else 0.0
    if total > dead_zone:
        return Outcome.WIN
    if total < -dead_zone:
        return Outcome.LOSS
    return Outcome.TIE


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def net(self) -> float:
        """(wins − losses) / questions; in [-1, 1], 0 for an empty group."""
        return (self.wins - self.losses) / self.n if self.n else 0.0

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> WinRate:
        items = list(outcomes)
        return cls(
            wins=sum(o is Outcome.WIN for o in items),
            losses=sum(o is Outcome.LOSS for o in items),
            ties=sum(o is Outcome.TIE for o in items),
        )


def pooled_net(clusters: Iterable[Iterable[Outcome]]) -> float:
    """The net win rate of all outcomes of ``clusters`` (e.g. one question's pairs from several
    runs, or its points): the statistic a bootstrap over questions resamples, so a question's
    outcomes stay together."""
    return WinRate.of(o for cluster in clusters for o in cluster).net


def win_rates_by(
    outcomes: Sequence[tuple[str, Outcome]],
) -> dict[str, WinRate]:
    """Net win rate per group key (a category, or "suits"/"other"), plus ``"all"``."""
    groups: dict[str, list[Outcome]] = {}
    for key, outcome in outcomes:
        groups.setdefault(key, []).append(outcome)
    result = {key: WinRate.of(items) for key, items in sorted(groups.items())}
    result["all"] = WinRate.of(o for _, o in outcomes)
    return result
