"""Token bytes to text: incremental UTF-8 decoding and stop strings with hold-back."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class StopMatcher:
    """Finds stop strings in streamed text without ever emitting one.

    Text that could be the start of a stop string is held back until the next piece shows
    whether it is (then everything from the stop string on is dropped) or is not (then it is
    released). The output therefore never contains a stop string, even one split across tokens.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return what can be emitted now. Sets :attr:`stopped` on a match."""
        if self.stopped:
            return ""
        pending = self._pending + text
        cut = min((i for i in (pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return pending[:cut]
        hold = self._partial_match_length(pending)
        self._pending = pending[len(pending) - hold :]
        return pending[: len(pending) - hold]

    def flush(self) -> str:
        """Release held-back text when generation ends without a stop string."""
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _partial_match_length(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best


class TextAssembler:
    """Bytes of token pieces in, text out: UTF-8 characters split across tokens are joined."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)
        self._parts: list[str] = []

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def feed(self, piece: bytes) -> str:
        out = self._stops.feed(self._decoder.decode(piece))
        self._parts.append(out)
        return out

    def finish(self) -> str:
        out = self._stops.feed(self._decoder.decode(b"", final=True))
        out += self._stops.flush()
        self._parts.append(out)
        return out

    @property
    def text(self) -> str:
        return "".join(self._parts)
