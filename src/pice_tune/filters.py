"""Filters that drop bad teacher expansions before they become training targets.

Pure functions over one expansion: each returns the reason it rejects, or ``None``. The order
in :data:`FILTERS` is the order reasons are reported in; the first that fires names the drop.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from edge_agent.prompts import BODY_MAX_WORDS

T = TypeVar("T")

_WORD = re.compile(r"[a-z0-9']+")
# A finished expansion ends a sentence (or a code span, a formula's closing bracket).
_ENDS_CLEANLY = re.compile(r"""[.!?)"'`\]*]\s*$""")
# Words of the premise a body may share with the question without restating it.
RESTATE_RUN = 6
REPEAT_NGRAM = 4
REPEAT_TIMES = 3


@dataclass(frozen=True)
class Expansion:
    """One teacher expansion of one point, with what the filters need to judge it."""

    question: str
    titles: tuple[str, ...]
    index: int
    body: str
    finish_reason: str | None


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def empty(e: Expansion) -> str | None:
    return "empty" if not words(e.body) else None


def truncated(e: Expansion) -> str | None:
    """Cut off by the token cap, or ending mid-sentence."""
    if e.finish_reason == "length":
        return "truncated"
    return None if _ENDS_CLEANLY.search(e.body) else "truncated"


def repeats(e: Expansion) -> str | None:
    """Degenerate loops: a sentence said twice, or one 4-word run three times."""
    sentences = [" ".join(words(s)) for s in re.split(r"(?<=[.!?])\s+", e.body)]
    sentences = [s for s in sentences if len(s.split()) >= 3]
    if len(sentences) != len(set(sentences)):
        return "repeat"
    toks = words(e.body)
    grams = Counter(tuple(toks[i : i + REPEAT_NGRAM]) for i in range(len(toks) - REPEAT_NGRAM + 1))
    if grams and max(grams.values()) >= REPEAT_TIMES:
        return "repeat"
    return None


def stem(word: str) -> str:
    """A crude stem, so "travelling" and "traveling" (or "plant" and "plants") match."""
    return word[:5]


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive words found in both."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def restated_premise(e: Expansion) -> str | None:
    """The body copies a long run of the question (the premise) instead of answering.

    The stock edge's worst habit on counterfactuals ("If the Moon were twice as far, ..."):
    training on such targets would teach it.
    """
    question = [stem(w) for w in words(e.question)]
    if longest_common_run(question, [stem(w) for w in words(e.body)]) >= RESTATE_RUN:
        return "restated_premise"
    return None


def fragment(e: Expansion) -> str | None:
    """The body continues the title instead of standing alone ("is crucial for ...").

    The edge's prompt opens the point as ``N. **Title**:``, so its body must read as a sentence
    of its own; a teacher that wrote a continuation would teach the edge to write one.
    """
    first = e.body.lstrip(" *_\"'`(")
    return "fragment" if first[:1].islower() else None


def echoed_title(e: Expansion) -> str | None:
    """The body is only the point's title again (the cleaner already strips a leading echo)."""
    title = words(e.titles[e.index]) if e.index < len(e.titles) else []
    return "echoed_title" if title and words(e.body) == title else None


def too_long(e: Expansion) -> str | None:
    """Longer than the edge's prompt allows (``BODY_MAX_WORDS``).

    The edge is told "one or two short sentences, at most 40 words"; a target that breaks that
    contract teaches it to run on, and a run-on body hits the serve-time token cap and is cut
    (the first trained edge: 30 of its 257 targets were over the limit, and 18% of its points
    ran to the cap).
    """
    return "too_long" if len(words(e.body)) > BODY_MAX_WORDS else None


Filter = Callable[[Expansion], str | None]
FILTERS: tuple[Filter, ...] = (
    empty,
    truncated,
    repeats,
    restated_premise,
    fragment,
    echoed_title,
    too_long,
)


def first_rejection(checks: Sequence[Callable[[T], str | None]], item: T) -> str | None:
    """The reason of the first check that rejects ``item``, or ``None`` when all pass."""
    for check in checks:
        reason = check(item)
        if reason is not None:
            return reason
    return None


def reject_reason(e: Expansion) -> str | None:
    return first_rejection(FILTERS, e)


def duplicate_points(bodies: Sequence[str]) -> set[int]:
    """Indices of bodies that repeat an earlier point's body (the later copy is dropped)."""
    seen: set[str] = set()
    out: set[int] = set()
    for i, body in enumerate(bodies):
        key = " ".join(words(body))
        if key and key in seen:
            out.add(i)
        seen.add(key)
    return out
