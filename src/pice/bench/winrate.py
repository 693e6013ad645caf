"""Pairwise judging arithmetic: verdicts in both orders, outcomes, net win rates.

Each pair (candidate answer, baseline answer) is judged twice, once with the candidate shown as
answer A and once as answer B, to cancel the judge's position bias. Each judgment scores +1 for
the candidate, -1 for the baseline, 0 for a tie; the question's outcome is the sign of the sum,
so two orders that disagree make a tie (the convention of the Skeleton-of-Thought paper).
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
_LEADING = re.compile(r"^\W*(?:answer\s+|assistant\s+)?(A|B|TIE|C)\b", re.IGNORECASE)


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


def score(verdict: Verdict, *, candidate_is_a: bool) -> int:
    """+1 when the verdict favours the candidate, -1 the baseline, 0 a tie or invalid reply."""
    if verdict is Verdict.A:
        return 1 if candidate_is_a else -1
    if verdict is Verdict.B:
        return -1 if candidate_is_a else 1
    return 0


def combine(candidate_first: Verdict, candidate_second: Verdict) -> Outcome:
    """The outcome from the two orders: candidate shown as A, then shown as B."""
    total = score(candidate_first, candidate_is_a=True) + score(
        candidate_second, candidate_is_a=False
    )
    if total > 0:
        return Outcome.WIN
    if total < 0:
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
