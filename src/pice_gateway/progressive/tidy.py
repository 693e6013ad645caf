"""What of a point's body is worth showing: a loop stopped at its first turn, a cut body ended
on its last full sentence.

Two faults of a small edge model reach the reader as text that is plainly broken, and neither
needs a model to see:

- **a loop**: the same word or short phrase over and over ("because it was a single, single,
  single, …") until the point's token share runs out (:mod:`pice.loops` defines one: a phrase
  four times in a row, a single word eight). A body still decoding is shown only up to where
  its loop begins to repeat (:func:`visible`), so no more than the loop's first turns reach
  the client; the edge agent also stops a looping expansion at once.
- **a cut**: the body ran into its share of the request's ``max_tokens`` and stops mid-sentence
  ("… helps to"), and the next point starts right after it. :func:`tidy` ends such a body on
  its last full sentence, or, when it has none past what was already sent, marks the cut with
  an ellipsis. A body streaming live holds back its unfinished sentence once it is close to its
  share (``settled``), so that a cut there is invisible too.

Text already sent to the client cannot be taken back, so both work above a ``floor`` (the length
already sent). A body that finished on its own and has no loop is shown as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pice.loops import loop_start

ELLIPSIS = " …"

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


def visible(body: str, *, settled: bool = False, floor: int = 0) -> str:
    """What of a body still decoding may be shown: all of it, or up to its loop; ``settled``
    (the body is near its token share and may be cut): only up to its last full sentence, and
    nothing past ``floor`` (the part already sent) when no sentence ends after it."""
    start = loop_start(body)
    if start is not None:
        body = body[:start].rstrip()
    return last_sentence(body, floor) if settled else body


def last_sentence(body: str, floor: int = 0) -> str:
    """``body`` up to its last full sentence ending at or after ``floor``, else up to ``floor``."""
    end = _last_end(body, floor)
    return body[: floor if end is None else end]


def _last_end(body: str, floor: int) -> int | None:
    """Where the last full sentence of ``body`` ending at or after ``floor`` ends, if any."""
    ends = [m.end() for m in _SENTENCE_END.finditer(body) if m.end() >= floor]
    return ends[-1] if ends else None


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
    if (end := _last_end(body, floor)) is not None or not body:
        return Tidied(body[:end], trimmed)
    # Only the unsent part may lose its trailing comma or dash before the ellipsis.
    return Tidied(body[:floor] + body[floor:].rstrip(" ,;:-–—") + ELLIPSIS, trimmed)
