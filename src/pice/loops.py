"""Degenerate loops in generated text: one definition for the edge that stops them and the
gateway that hides them.

A small model sometimes says the same word or short phrase over and over ("because it was a
single, single, single, …") until its token budget runs out. Such a run is a *loop* when a
unit of at most :data:`LOOP_UNIT` words is said at least :data:`LOOP_REPEATS` times in a row and
over at least :data:`LOOP_WORDS` words in all: a phrase four times in a row is never meant, and
a single word needs eight ("no, no, no, no" is emphasis; eight times is not). Words compare
without case and surrounding punctuation, so "single," "Single" and "single." are one turn.

A larger model loops by the sentence or the paragraph instead ("We are looking for a way to
make a difference in the world. …" until the budget ends). :data:`PASSAGES` is that rule: a
passage of more than :data:`LOOP_UNIT` words said twice in a row over at least
:data:`PASSAGE_WORDS` words (a shorter one needs more copies), unless the run also repeats a
phrase of at most :data:`LOOP_UNIT` words (a table's ``| --- | --- |`` row, an array of zeros:
those are left to :data:`PHRASES`, which whole cloud answers do not apply).

- :func:`loop_start` finds the earliest loop in a finished text (the gateway, which shows a
  point's body only up to it);
- :class:`LoopWatch` follows a text as it is generated and says when its latest words close a
  loop (the edge, which then stops the sequence instead of decoding the loop to its budget, and
  the gateway's whole cloud answers, with :data:`PASSAGES`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

LOOP_UNIT = 6
LOOP_REPEATS = 4
LOOP_WORDS = 8
PASSAGE_WORDS = 40
PASSAGE_UNIT = 400

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class LoopRule:
    """A unit of ``min_unit`` to ``max_unit`` words said :meth:`copies` times in a row; with
    ``phrases_excepted``, not when the run also repeats a unit shorter than ``min_unit``."""

    min_unit: int
    max_unit: int
    repeats: int
    words: int
    phrases_excepted: bool = False

    def copies(self, unit: int) -> int:
        """How many copies in a row of a ``unit``-word unit make a loop."""
        return max(self.repeats, -(-self.words // unit))


PHRASES = LoopRule(min_unit=1, max_unit=LOOP_UNIT, repeats=LOOP_REPEATS, words=LOOP_WORDS)
PASSAGES = LoopRule(
    min_unit=LOOP_UNIT + 1,
    max_unit=PASSAGE_UNIT,
    repeats=2,
    words=PASSAGE_WORDS,
    phrases_excepted=True,
)


def copies(unit: int) -> int:
    """How many copies in a row of a ``unit``-word phrase make a loop (:data:`PHRASES`)."""
    return PHRASES.copies(unit)


def word_key(word: str) -> str:
    """What a word is compared by: lower case, without the punctuation around it."""
    return word.strip(".,;:!?\"'()[]").lower() or word


def _excepted(rule: LoopRule, runs: dict[int, int], span: int) -> bool:
    """Whether the ``span`` words that end where ``runs`` were counted also repeat a unit
    shorter than the rule's: ``runs[u]`` words in a row there each equal the word ``u`` before."""
    return rule.phrases_excepted and any(
        runs.get(unit, 0) >= span - unit for unit in range(1, rule.min_unit)
    )


def loop_start(text: str, rule: LoopRule = PHRASES) -> int | None:
    """Where the earliest loop in ``text`` begins to repeat itself: the character offset of the
    second copy of its unit (the first copy is not the loop), or ``None`` when there is none.

    Linear in the words per unit length: ``copies`` copies of a ``unit``-word phrase from word
    ``i`` on are exactly a run of ``unit * (copies - 1)`` words each equal to the word ``unit``
    before it, from word ``i + unit`` on (a point's live body is searched on every token).
    """
    spans = [(m.start(), word_key(m.group())) for m in _WORD.finditer(text)]
    words = [key for _, key in spans]
    # Runs of the units a rule excepts, per word: the same count as the search's own.
    short: dict[int, list[int]] = {}
    if rule.phrases_excepted:
        for unit in range(1, rule.min_unit):
            counts, run = [0] * len(words), 0
            for j in range(unit, len(words)):
                run = run + 1 if words[j] == words[j - unit] else 0
                counts[j] = run
            short[unit] = counts
    best: int | None = None
    for unit in range(rule.min_unit, rule.max_unit + 1):
        span = unit * rule.copies(unit)
        need, run = span - unit, 0
        for j in range(unit, len(words)):
            if best is not None and j >= need and spans[j - need + 1][0] >= best:
                break  # any loop of this unit found from here on starts later
            run = run + 1 if words[j] == words[j - unit] else 0
            if run < need:  # words[j - need + 1 : j + 1] do not repeat the unit before them
                continue
            if _excepted(rule, {u: counts[j] for u, counts in short.items()}, span):
                continue
            best = spans[j - need + 1][0]
            break
    return best


def quotes(text: str, unit: Sequence[str]) -> bool:
    """Whether ``text`` says the loop's ``unit`` (compared words), starting at any of its words:
    a rotation of the unit, e.g. "mill at dawn. The river flows …" for a loop of "The river
    flows … mill at dawn.", since where a watch sees a loop's copies begin depends on what came
    before them. A loop of a passage the user wrote is a repetition they asked for."""
    if not unit:
        return False
    sep = "\x00"
    cycle = sep + sep.join([*unit, *unit]) + sep
    keys = [word_key(m.group()) for m in _WORD.finditer(text)]
    n, words = len(unit), set(unit)
    return any(
        keys[i] in words and sep + sep.join(keys[i : i + n]) + sep in cycle
        for i in range(len(keys) - n + 1)
    )


class LoopWatch:
    """Text in, piece by piece; :attr:`looping` once the words so far end in a loop of
    ``rule`` (:data:`PHRASES` unless given).

    Each word completed updates, per unit length, the run of words equal to the word a unit
    before (a word is complete once whitespace follows it), so the cost per word is constant:
    a loop is caught as its last needed copy completes, which is as early as
    :func:`loop_start` would see it.
    """

    def __init__(self, rule: LoopRule = PHRASES) -> None:
        self._rule = rule
        # The newest words, as many as the longest unit needs to look back.
        self._words: deque[str] = deque(maxlen=rule.max_unit + 1)
        self._runs = dict.fromkeys(range(1, rule.max_unit + 1), 0)
        self._partial = ""
        self.looping = False
        # The length of the unit that closed the loop, once one has.
        self.unit: int | None = None

    def loop_words(self) -> list[str]:
        """The loop's unit as its last copy said it (compared words, :func:`word_key`); empty
        until a loop has closed."""
        return list(self._words)[-self.unit :] if self.unit else []

    def feed(self, text: str) -> bool:
        """Add ``text``; return :attr:`looping`."""
        if self.looping or not text:
            return self.looping
        parts = (self._partial + text).split()
        ends_in_space = text[-1].isspace()
        self._partial = "" if ends_in_space or not parts else parts.pop()
        for word in parts:
            self._add(word_key(word))
            if self._closes_loop():
                self.looping = True
                break
        return self.looping

    def _add(self, key: str) -> None:
        words, runs = self._words, self._runs
        words.append(key)
        for unit in range(1, min(len(words) - 1, self._rule.max_unit) + 1):
            runs[unit] = runs[unit] + 1 if words[-1 - unit] == key else 0

    def _closes_loop(self) -> bool:
        rule, runs = self._rule, self._runs
        for unit in range(rule.min_unit, min(len(self._words), rule.max_unit + 1)):
            span = unit * rule.copies(unit)
            if runs[unit] >= span - unit and not _excepted(rule, runs, span):
                self.unit = unit
                return True
        return False
