"""Stop strings over streamed text, with hold-back: one core for every place PICE applies them.

The edge engine cuts each sequence's detokenised text at the request's stop strings
(``edge_agent.engine.text``); the gateway cuts the merged progressive answer, headers and
several points' bodies included, at the client's ``stop`` sequences
(``pice_gateway.progressive.pipeline``). Both need the same guarantee: the output never
contains any part of a stop string that is then matched, however the text is split.
"""

from __future__ import annotations

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
