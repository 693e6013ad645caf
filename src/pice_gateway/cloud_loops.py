"""Stopping a whole cloud answer that has begun to repeat itself by the passage.

The 1.5B cloud model sometimes ends an answer in a loop of whole sentences or paragraphs
("We are not just looking for treasure, …" eleven times) and decodes it to its token budget:
768 tokens, two minutes of the one resource every request shares, for text nobody reads. A
:class:`LoopCut` watches the answer as it streams (:data:`pice.loops.PASSAGES`: a passage of
more than six words said twice in a row); once a loop closes, the answer goes on to the end of
the sentence it is in (the second copy rarely ends on one) and then stops, so the client reads
one repetition, not ten, and the cloud is freed when the gateway closes the stream.

A repetition the user asked for is not a loop: when the repeated passage is one the
conversation holds ("write 'The river flows past the mill at dawn.' twenty times"), the
watch stands down for the rest of the answer (:func:`pice.loops.quotes`).
"""

from __future__ import annotations

import re

from pice.loops import PASSAGES, LoopRule, LoopWatch, quotes

# A sentence ends at ., ! or ? (and any closing quote, bracket or emphasis) before whitespace,
# or at a line break (a list item, a heading): the text is cut there.
_END = re.compile(r"[.!?][\"')\]*_]*(?=\s)|(?=\n)")
# The most words shown after a loop closed while looking for the end of its sentence.
TAIL_WORDS = 48
# How far back a sentence's end is looked for before the newest piece: its full stop and
# closing marks came with the pieces before, the whitespace that confirms it with this one.
_BACK = 8
_SPACE = re.compile(r"\s+")


class LoopCut:
    """Pieces of a streamed answer in; for each, what of it to show and whether to stop."""

    def __init__(
        self, rule: LoopRule = PASSAGES, tail_words: int = TAIL_WORDS, *, quoted: str = ""
    ) -> None:
        """``quoted``: the conversation's text; a loop of a passage it holds is let run."""
        self._watch = LoopWatch(rule)
        self._quoted = quoted
        self._tail_words = tail_words
        # A loop of the conversation's own words closed: the rest is shown as it comes.
        self.requested = False
        # The last characters shown: the loop's last word may have ended a sentence there.
        self._shown = ""
        # Those characters and the text from the piece that closed the loop on (``None``
        # until one has).
        self._tail: str | None = None
        # Where in it a sentence's end may be: from the loop's last word on.
        self._from = 0

    @property
    def looped(self) -> bool:
        """A loop closed: the answer stops at the end of the sentence it is in."""
        return self._tail is not None

    def feed(self, text: str) -> tuple[str, bool]:
        """``(shown, stop)``: the part of ``text`` to show, and whether the answer ends with it
        (the caller closes the stream then)."""
        if self.requested:
            return text, False
        if self._tail is None:
            closed_at = self._closing(text)
            if closed_at is None:
                self._shown = (self._shown + text)[-_BACK:]
                return text, False
            # The loop's last word is the one before the whitespace that closed it: its
            # sentence may end right there, and an earlier end in this piece does not count.
            last_word = re.search(r"\S*\s*$", self._shown + text[:closed_at])
            self._from = last_word.start() if last_word else 0
            self._tail = self._shown
        start = len(self._tail)
        self._tail += text
        end = _END.search(self._tail, max(self._from, start - _BACK))
        if end is not None:
            return self._tail[start : max(start, end.end())], True
        return text, len(self._tail.split()) > self._tail_words

    def _closing(self, text: str) -> int | None:
        """Feed ``text`` to the watch up to each whitespace (which completes a word); the
        offset just past the whitespace that closed a loop, or ``None``."""
        fed = 0
        for space in _SPACE.finditer(text):
            if self._watch.feed(text[fed : space.end()]):
                self.requested = quotes(self._quoted, self._watch.loop_words())
                return None if self.requested else space.end()
            fed = space.end()
        self._watch.feed(text[fed:])  # a word still open: it cannot close a loop yet
        return None
