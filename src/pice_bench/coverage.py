"""Cheap quality checks that need no judge: whether each sketch point was really expanded.

The merged answer renders point ``n`` as ``"{n}. **{title}**: {body}"`` (see
:mod:`pice_gateway.progressive.merge`), so the title is always in the answer and a check for
it could never fail. What can fail is the body: per point, it must be there, say something
the title does not (new content words), and not repeat an earlier point's body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

_WORD = re.compile(r"[a-z0-9]+")
# Words too common to carry a point's content (words of one or two letters are ignored anyway).
_STOPWORDS = frozenset(
    {"and", "are", "can", "does", "for", "from", "how", "into", "its", "should", "that", "the"}
    | {"their", "this", "what", "when", "why", "will", "with", "you", "your", "also", "more"}
    | {"has", "have", "was", "were", "been", "being", "not", "but", "all", "any", "each"}
    | {"which", "who", "them", "they", "these", "those", "there", "than", "then", "such"}
)
# A body must bring at least this many content words that are not in its title.
MIN_NEW_WORDS = 3
# A body sharing this much of its content words (Jaccard) with an earlier point's body repeats it.
DUPLICATE_JACCARD = 0.7


def content_words(text: str) -> set[str]:
    """Lower-cased words of three letters or more, stop words dropped, a plural ``s`` cut."""
    words = (w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 2)
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words}


class PointFailure(StrEnum):
    MISSING = "missing"  # the point's header is not in the answer
    EMPTY = "empty"  # a header with no body
    RESTATES = "restates-title"  # the body adds fewer than MIN_NEW_WORDS words to its title
    DUPLICATE = "duplicate"  # the body repeats an earlier point's body


def point_bodies(titles: Sequence[str], text: str) -> list[str | None]:
    """Each point's body in a merged answer; ``None`` where its header is not found.

    Headers are looked for in order; a body runs to the next found header or the end.
    """
    starts: list[tuple[int, int] | None] = []
    pos = 0
    for n, title in enumerate(titles, start=1):
        found = text.find(f"{n}. **{title}**:", pos)
        if found < 0:
            starts.append(None)
            continue
        end = found + len(f"{n}. **{title}**:")
        starts.append((found, end))
        pos = end
    bodies: list[str | None] = []
    for i, span in enumerate(starts):
        if span is None:
            bodies.append(None)
            continue
        later = [s[0] for s in starts[i + 1 :] if s is not None]
        bodies.append(text[span[1] : later[0] if later else len(text)].strip())
    return bodies


def check_point(
    title: str, body: str | None, earlier: Sequence[str | None], *, context: str = ""
) -> PointFailure | None:
    """Why the point is not covered, or ``None`` when it is; ``context`` (e.g. the question)
    counts as already said, like the title."""
    if body is None:
        return PointFailure.MISSING
    words = content_words(body)
    if not words:
        return PointFailure.EMPTY
    if len(words - content_words(title) - content_words(context)) < MIN_NEW_WORDS:
        return PointFailure.RESTATES
    for other in earlier:
        theirs = content_words(other or "")
        if theirs and len(words & theirs) / len(words | theirs) >= DUPLICATE_JACCARD:
            return PointFailure.DUPLICATE
    return None


@dataclass(frozen=True)
class Coverage:
    points: int
    # (point index, title, why) for every point not covered.
    failures: list[tuple[int, str, PointFailure]] = field(default_factory=list)

    @property
    def covered(self) -> int:
        return self.points - len(self.failures)

    @property
    def complete(self) -> bool:
        return not self.failures

    @property
    def fraction(self) -> float:
        return self.covered / self.points if self.points else 1.0


def sketch_coverage(points: Sequence[str], answer: str, *, context: str = "") -> Coverage:
    """Which sketch points the merged answer really expands (see the module doc)."""
    bodies = point_bodies(points, answer)
    failures = []
    for i, (title, body) in enumerate(zip(points, bodies, strict=True)):
        why = check_point(title, body, bodies[:i], context=context)
        if why is not None:
            failures.append((i, title, why))
    return Coverage(points=len(points), failures=failures)


def word_count(text: str) -> int:
    return len(text.split())
