"""The request's ``stop`` sequences, applied to the merged answer as it streams.

On the progressive path the answer is assembled from a sketch header and several expansions,
so no single model sees the text a stop sequence must be matched against: a stop can span a
point's header and its body, two deltas of one point, or the end of one point and the start of
the next. :class:`StopScanner` therefore runs on the text exactly as the client would receive
it. It holds back the longest tail that could still be the start of a stop sequence (so the
client never receives a partial match that later turns out to be a stop) and releases it once
the following text rules the match out, or at the end of the answer.

Pure and synchronous; the pipeline feeds it every piece of answer text in order.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Cuts a text stream before the first occurrence of any stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (after what was held back) that may be sent now.

        Once a stop sequence is found, :attr:`stopped` is set and every later call returns "".
        """
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The held-back tail, at the end of the answer (it never became a stop sequence)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest tail of ``buffer`` that is a proper prefix of a stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
