"""Token bytes to text: incremental UTF-8 decoding and stop strings with hold-back."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from pice.stops import StopMatcher

__all__ = ["StopMatcher", "TextAssembler"]


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
