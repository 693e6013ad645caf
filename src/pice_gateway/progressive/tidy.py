"""What of a point's body is worth showing: a loop stopped at its first turn, a cut body ended
on its last full sentence.

Two faults of a small edge model reach the reader as text that is plainly broken, and neither
needs a model to see:

- **a loop**: the same word or short phrase over and over ("because it was a single, single,
  single, …") until the point's token share runs out. :func:`loop_start` finds a phrase of up to
  :data:`LOOP_UNIT` words said four times in a row or more (a single word eight) and answers
  where its second copy begins: everything from there is the loop. A body still decoding is
  shown only up to there (:func:`visible`), so no more than the loop's first turns reach the
  client.
- **a cut**: the body ran into its share of the request's ``max_tokens`` and stops mid-sentence
  ("… helps to"), and the next point starts right after it. :func:`tidy` ends such a body on
  its last full sentence, or, when it has none past what was already sent, marks the cut with
  an ellipsis.

Text already sent to the client cannot be taken back, so both work above a ``floor`` (the length
already sent). A body that finished on its own and has no loop is shown as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A unit of at most LOOP_UNIT words, said at least LOOP_REPEATS times in a row and over at
# least LOOP_WORDS words in all, is a loop: a phrase four times in a row is never meant, and a
# single word needs eight ("no, no, no, no" is emphasis, eight times is not).
LOOP_UNIT = 6
LOOP_REPEATS = 4
LOOP_WORDS = 8

ELLIPSIS = " …"

_WORD = re.compile(r"\S+")
# A sentence ends at ., ! or ? (and any closing quotes or brackets after it), followed by a
# space or the end of the text. A full stop after a lone letter ("e.g.", "U.S.", an initial)
# is not an end.
_SENTENCE_END = re.compile(r"(?<![\s.][A-Za-z])[.!?][\"')\]”’]*(?=\s|$)")

Trimmed = Literal["loop", "length"]


@dataclass(frozen=True)
class Tidied:
    """A body as shown, and why it is shorter than what the model wrote (``None``: it is not)."""

    text: str
    trimmed: Trimmed | None = None


def _key(word: str) -> str:
    # "single," and "Single," are the same turn of a loop; "single." closing it is too.
    return word.strip(".,;:!?\"'()[]").lower() or word


def loop_start(text: str) -> int | None:
    """Where the loop in ``text`` begins to repeat itself: the offset of the second copy of a
    unit of 1 to :data:`LOOP_UNIT` words said :func:`copies` times in a row (the first copy
    stays), or ``None`` when there is no loop. The earliest such loop counts."""
    spans = [(m.start(), _key(m.group())) for m in _WORD.finditer(text)]
    words = [key for _, key in spans]
    best: int | None = None
    for unit in range(1, LOOP_UNIT + 1):
        n = copies(unit)
        for i in range(len(words) - unit * n + 1):
            if best is not None and spans[i + unit][0] >= best:
                break
            first = words[i : i + unit]
            if all(words[i + k * unit : i + (k + 1) * unit] == first for k in range(1, n)):
                best = spans[i + unit][0]
                break
    return best


def copies(unit: int) -> int:
    """How many copies in a row of a ``unit``-word phrase make a loop."""
    return max(LOOP_REPEATS, -(-LOOP_WORDS // unit))


def visible(body: str) -> str:
    """What of a body still decoding may be shown: all of it, or up to its loop."""
    start = loop_start(body)
    return body if start is None else body[:start].rstrip()


def tidy(body: str, *, cut: bool, floor: int = 0) -> Tidied:
    """The finished ``body`` as shown: up to its loop, if any; ended on its last full sentence
    when it was ``cut`` (by its token share) or looped. Never shorter than ``floor`` characters
    (the part already sent): when no sentence ends past it, the cut is marked with an ellipsis."""
    trimmed: Trimmed | None = "length" if cut else None
    start = loop_start(body)
    if start is not None:
        body, trimmed = body[: max(start, floor)].rstrip(), "loop"
    if trimmed is None:
        return Tidied(body)
    ends = [m.end() for m in _SENTENCE_END.finditer(body) if m.end() >= floor]
    if ends:
        return Tidied(body[: ends[-1]], trimmed)
    if not body:
        return Tidied(body, trimmed)
    # Only the unsent part may lose its trailing comma or dash before the ellipsis.
    return Tidied(body[:floor] + body[floor:].rstrip(" ,;:-–—") + ELLIPSIS, trimmed)
