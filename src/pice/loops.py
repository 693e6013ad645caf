"""Degenerate loops in generated text: one definition for the edge that stops them and the
gateway that hides them.

A small model sometimes says the same word or short phrase over and over ("because it was a
single, single, single, …") until its token budget runs out. Such a run is a *loop* when a
unit of at most :data:`LOOP_UNIT` words is said at least :data:`LOOP_REPEATS` times in a row and
over at least :data:`LOOP_WORDS` words in all: a phrase four times in a row is never meant, and
a single word needs eight ("no, no, no, no" is emphasis; eight times is not). Words compare
without case and surrounding punctuation, so "single," "Single" and "single." are one turn.

- :func:`loop_start` finds the earliest loop in a finished text (the gateway, which shows a
  point's body only up to it);
- :class:`LoopWatch` follows a text as it is generated and says when its latest words close a
  loop (the edge, which then stops the sequence instead of decoding the loop to its budget).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LOOP_UNIT = 6
LOOP_REPEATS = 4
LOOP_WORDS = 8

_WORD = re.compile(r"\S+")


def copies(unit: int) -> int:
    """How many copies in a row of a ``unit``-word phrase make a loop."""
    return max(LOOP_REPEATS, -(-LOOP_WORDS // unit))


def word_key(word: str) -> str:
    """What a word is compared by: lower case, without the punctuation around it."""
    return word.strip(".,;:!?\"'()[]").lower() or word


def _repeats(words: Sequence[str], start: int, unit: int) -> bool:
    """Whether ``words[start:]`` begins with :func:`copies` copies of its first ``unit``."""
    first = words[start : start + unit]
    return all(
        words[start + k * unit : start + (k + 1) * unit] == first for k in range(1, copies(unit))
    )


def loop_start(text: str) -> int | None:
    """Where the earliest loop in ``text`` begins to repeat itself: the character offset of the
    second copy of its unit (the first copy is not the loop), or ``None`` when there is none.

    Linear in the words per unit length: ``copies`` copies of a ``unit``-word phrase from word
    ``i`` on are exactly a run of ``unit * (copies - 1)`` words each equal to the word ``unit``
    before it, from word ``i + unit`` on (a point's live body is searched on every token).
    """
    spans = [(m.start(), word_key(m.group())) for m in _WORD.finditer(text)]
    words = [key for _, key in spans]
    best: int | None = None
    for unit in range(1, LOOP_UNIT + 1):
        need, run = unit * (copies(unit) - 1), 0
        for j in range(unit, len(words)):
            if best is not None and spans[j - run][0] >= best:
                break  # any loop of this unit found from here on starts later
            run = run + 1 if words[j] == words[j - unit] else 0
            if run >= need:  # words[j - need + 1 : j + 1] repeat the unit before them
                best = spans[j - need + 1][0]
                break
    return best


class LoopWatch:
    """Text in, piece by piece; :attr:`looping` once the words so far end in a loop.

    Only the newest words are checked when a word completes (a word is complete once
    whitespace follows it), so the cost per piece is constant: a loop is caught as its last
    needed copy completes, which is as early as :func:`loop_start` would see it.
    """

    def __init__(self) -> None:
        self._words: list[str] = []
        self._partial = ""
        self.looping = False

    def feed(self, text: str) -> bool:
        """Add ``text``; return :attr:`looping`."""
        if self.looping or not text:
            return self.looping
        parts = (self._partial + text).split()
        ends_in_space = text[-1].isspace()
        self._partial = "" if ends_in_space or not parts else parts.pop()
        for word in parts:
            self._words.append(word_key(word))
            if self._closes_loop():
                self.looping = True
                break
        return self.looping

    def _closes_loop(self) -> bool:
        words = self._words
        for unit in range(1, LOOP_UNIT + 1):
            span = unit * copies(unit)
            if len(words) >= span and _repeats(words, len(words) - span, unit):
                return True
        return False
