"""Cheap quality checks that need no judge: sketch-point coverage and answer lengths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")
# Words too common to show that a point's content made it into the answer (words of one or
# two letters are ignored anyway).
_STOPWORDS = frozenset(
    {"and", "are", "can", "does", "for", "from", "how", "into", "its", "should", "that", "the"}
    | {"their", "this", "what", "when", "why", "will", "with", "you", "your"}
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 2}


def point_covered(point: str, answer: str, *, threshold: float = 0.5) -> bool:
    """Whether at least ``threshold`` of the point's content words occur in the answer.

    A point with no content words (for example "Other") counts as covered: there is nothing
    to look for.
    """
    words = content_words(point)
    if not words:
        return True
    present = words & content_words(answer)
    return len(present) / len(words) >= threshold


@dataclass(frozen=True)
class Coverage:
    points: int
    covered: int

    @property
    def complete(self) -> bool:
        return self.covered == self.points

    @property
    def fraction(self) -> float:
        return self.covered / self.points if self.points else 1.0


def sketch_coverage(points: Sequence[str], answer: str) -> Coverage:
    """How many sketch points the merged answer covers."""
    return Coverage(points=len(points), covered=sum(point_covered(p, answer) for p in points))


def word_count(text: str) -> int:
    return len(text.split())
