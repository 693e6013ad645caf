"""The cloud's own expansion of a point, used when no edge can take it."""

from __future__ import annotations

import re
from typing import Any


def cloud_expansion_messages(
    messages: list[dict[str, Any]], titles: list[str], index: int, *, words: int | None = None
) -> list[dict[str, Any]]:
    """Ask the cloud for the body of point ``index`` only, given the conversation and outline;
    ``words`` (``progressive.point_words``) asks for a body of at most that many words, as the
    edges are asked; ``None`` keeps the wording the distilled data was written with."""
    history = messages[:-1]
    question = messages[-1]["content"] if messages else ""
    outline = "\n".join(f"{n}. {title}" for n, title in enumerate(titles, start=1))
    length = "in one or two sentences" if words is None else f"in at most {words} words"
    instruction = (
        f"Question: {question}\n\nOutline of the answer:\n{outline}\n\n"
        f'Write point {index + 1} ("{titles[index]}") {length}. '
        "Write only the text of this point, without its number or title."
    )
    return [*history, {"role": "user", "content": instruction}]


class EchoStripper:
    """Drops a restated ``"3. **Title**:"`` at the start of a cloud expansion.

    The start is held back until it is long enough to tell, then released without the echo.
    A point in a later section of a framed sketch is asked for as "Heading: title"
    (:attr:`~pice_gateway.progressive.sketch.PointFound.outline_title`); the cloud may echo
    either that or the bare title, so both are stripped (the longer first).
    """

    def __init__(self, index: int, title: str) -> None:
        titles = [title]
        if ": " in title:
            titles.append(title.split(": ", 1)[1])
        either = "|".join(re.escape(t) for t in titles)
        self._pattern = re.compile(
            rf"^\s*(?:{index + 1}\s*[.)]\s*)?(?:[*_]{{2}})?\s*(?:{either})\s*(?:[*_]{{2}})?"
            r"\s*[:.\-–—]?\s*",
            re.IGNORECASE,
        )
        self._hold = len(title) + 16
        self._buffer: str | None = ""

    def feed(self, text: str) -> str:
        if self._buffer is None:
            return text
        self._buffer += text
        if len(self._buffer) < self._hold:
            return ""
        return self.flush()

    def flush(self) -> str:
        if self._buffer is None:
            return ""
        out = self._pattern.sub("", self._buffer, count=1)
        self._buffer = None
        return out
