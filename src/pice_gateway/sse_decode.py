"""The ``data`` of server-sent events, decoded from a byte stream as it arrives (pure).

The gateway reads every upstream stream (the cloud's chunks, the edges' events) through
:class:`SseDataDecoder`. It keeps only what the gateway uses, each event's ``data`` (its
``data:`` lines joined by ``\\n``), and follows the SSE parsing rules for that: lines end in
CRLF, LF or CR; a blank line ends an event; an event without data is not one; ``:`` starts a
comment; one space after the field's colon is dropped; other fields are ignored. An event left
unfinished when the stream ends is dropped.

It works on bytes with C-level splitting, a few Python calls per event: reading through
httpx's text and line decoders and httpx-sse cost over 400 Python calls per streamed answer
of 20 chunks in the pass-through's profile (docs/operations.md "Overhead").
"""

from __future__ import annotations


class SseDataDecoder:
    """Feed it the body's byte chunks in order; it returns the ``data`` of each finished event."""

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        # The last chunk ended in CR: a LF starting the next one belongs to that line end.
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        lines = (self._tail + chunk).splitlines(keepends=True)
        # A last line without its end is kept for the next chunk; one ended by CR is whole
        # already (not held back waiting for a possible LF, which would delay its event).
        self._tail = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        self._skip_lf = bool(lines) and lines[-1].endswith(b"\r")
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[str]:
        events: list[str] = []
        for ended in lines:
            line = ended.rstrip(b"\r\n")
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data).decode())
                    self._data = []
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events
