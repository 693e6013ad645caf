"""The sketch: prompting the cloud for an outline (or a direct answer) and parsing it live.

The cloud streams either a numbered outline of short points, or the marker line ``DIRECT``
followed by the answer itself. :class:`SketchParser` turns that stream into events as lines
complete, so the first point can be dispatched while the cloud is still writing the second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pice.openai_protocol import ChatMessage

# Tuned on Qwen2.5-Coder-1.5B/0.5B-Instruct. Small models rarely write the marker unprompted by an
# example, and turn poems and equations into numbered lines; three short worked examples fix
# most of that at ~200 prompt tokens (the prefill is most of a CPU sketch's latency, so every
# word here costs).
_OUTLINE_RULES = (
    "write ONLY a numbered outline: 3 to 8 points, one per line, 2 to 6 words each, "
    "no details, nothing after the list."
)
SKETCH_SYSTEM_AUTO = (
    "You plan answers. For math, code, a short fact, or writing that must flow (poem, story, "
    "slogan, email), write DIRECT on the first line, then the full answer. For anything else, "
    + _OUTLINE_RULES
)
SKETCH_SYSTEM_OUTLINE = "You plan answers: " + _OUTLINE_RULES
# ``progressive.frame``: the outline between an opening line and a closing sentence, as a
# whole answer has them; the edges expand the points, the cloud's frame is shown as written.
SKETCH_SYSTEM_FRAMED = (
    "You plan answers: write one short sentence that opens the answer and ends with a colon; "
    "then a numbered outline: 3 to 8 points, one per line, 2 to 6 words each, no details; "
    "then one sentence that concludes the answer."
)

_OUTLINE_EXAMPLE = (
    "How can I sleep better?",
    "1. Fixed sleep schedule\n2. Dark, quiet bedroom\n3. Less caffeine\n"
    "4. No screens before bed\n5. Daily exercise",
)
_EXAMPLES_AUTO: tuple[tuple[str, str], ...] = (
    _OUTLINE_EXAMPLE,
    ("Solve 2x + 3 = 11.", "DIRECT\n2x = 8, so x = 4."),
    (
        "Write a two-line poem about rain.",
        "DIRECT\nSoft rain taps the glass,\nwashing the day away.",
    ),
)
_EXAMPLES_OUTLINE = (_OUTLINE_EXAMPLE,)
_EXAMPLES_FRAMED = (
    (
        _OUTLINE_EXAMPLE[0],
        "Better sleep comes from steady habits and a calm bedroom:\n"
        + _OUTLINE_EXAMPLE[1]
        + "\nKept up every day, these small changes add up to longer, deeper sleep.",
    ),
)


def sketch_messages(
    messages: list[ChatMessage], *, allow_direct: bool, frame: bool = False
) -> list[dict[str, Any]]:
    """The cloud conversation that asks for a sketch of ``messages``' last user turn.

    The user's own system messages are folded into ours: some chat templates accept a system
    message only in first position. ``frame`` asks an outline-only sketch for an opening line
    and a closing sentence too; a sketch that may answer directly keeps its own prompt.
    """
    if allow_direct:
        system, examples = SKETCH_SYSTEM_AUTO, _EXAMPLES_AUTO
    elif frame:
        system, examples = SKETCH_SYSTEM_FRAMED, _EXAMPLES_FRAMED
    else:
        system, examples = SKETCH_SYSTEM_OUTLINE, _EXAMPLES_OUTLINE
    user_system = [m.text() for m in messages if m.role in ("system", "developer")]
    if user_system:
        system += "\n\nThe user's instructions for the final answer:\n" + "\n".join(user_system)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for question, answer in examples:
        out.append({"role": "user", "content": question})
        out.append({"role": "assistant", "content": answer})
    out.extend(
        {"role": m.role, "content": m.text()}
        for m in messages
        if m.role not in ("system", "developer")
    )
    return out


@dataclass(frozen=True)
class PointFound:
    """A point of the outline; ``section`` is the heading of the list it is in, when a framed
    sketch wrote more than one ("Non-renewable sources:" before a second list), else ``None``."""

    index: int
    title: str
    section: str | None = None

    @property
    def outline_title(self) -> str:
        """The title as the edges see it in the outline: in a later section, after its heading
        ("Non-renewable sources: Coal, oil"), since the bare title is ambiguous there."""
        if self.section is None:
            return self.title
        return f"{_plain(self.section).rstrip(':')}: {self.title}"


@dataclass(frozen=True)
class DirectText:
    text: str


@dataclass(frozen=True)
class OutlineEnded:
    """The outline is over (cap reached or prose after it): the stream may be closed."""


@dataclass(frozen=True)
class FrameText:
    """A framed sketch's opening line (before the outline) or closing sentence (after it).

    The opening is given once the outline's first item starts: until then the line may be the
    start of prose, which is not shown."""

    text: str
    closing: bool


SketchEvent = PointFound | DirectText | OutlineEnded | FrameText


class _Mode(Enum):
    UNDECIDED = "undecided"
    OUTLINE = "outline"
    # A framed outline past its point cap, waiting for the closing sentence.
    CLOSING = "closing"
    DIRECT = "direct"
    ENDED = "ended"
    # A framed sketch with no list after its opening line: prose, not an outline.
    PROSE = "prose"


_NUMBERED = re.compile(r"^(\s*)(?:[*_]{2})?(?:#+\s*)?(\d{1,2})\s*[.):](?:[*_]{2})?\s+(.*)$")
_BULLET = re.compile(r"^(\s*)[-*•+]\s+(.*)$")
# The start of a list item, before its title: "1. ", "2: ", "**3.** ", "- " (what
# ``_NUMBERED`` and ``_BULLET`` read once the line is whole).
_ITEM_START = re.compile(r"^\s*(?:[*_]{2})?(?:#+\s*)?(?:\d{1,2}\s*[.):](?:[*_]{2})?|[-*•+])\s")
# Upper case, or alone on its line in any case: "Direct sunlight..." is prose, not the marker.
_MARKER = re.compile(r"^\W*DIRECT\b\W*(.*)$")
# The marker with the answer on the same line ("DIRECT: 84"), seen before the line ends.
_EARLY_MARKER = re.compile(r"^[\s*_#]*DIRECT[*_]*\s*[:.\-–]?\s+(?=\S)")
_TITLE_MAX = 80
# A framed sketch's first line longer than this is prose, not an opening (they run 5 to 20
# words): the stream is closed rather than read to the end of a paragraph nobody will see.
_OPENING_MAX_WORDS = 40
# Items a framed outline may list past the point cap while its closing is awaited.
_PAST_CAP_ITEMS = 2


# Markdown emphasis and code marks, dropped from titles and headings alike.
_EMPHASIS = re.compile(r"[*_`]+")


def _plain(text: str) -> str:
    """``text`` without markdown emphasis and a leading heading mark ("C#" keeps its "#")."""
    return " ".join(_EMPHASIS.sub("", re.sub(r"^\s*#+\s*", "", text)).split())


def _is_heading(line: str) -> bool:
    """A prose line after some items that introduces another list ("Tourists prefer places
    that:", "### Drawbacks"): it ends with a colon or is a markdown heading, and is as short as
    an opening."""
    plain = _plain(line)
    marked = plain.endswith(":") or line.lstrip().startswith("#")
    return marked and 0 < len(plain.split()) <= _OPENING_MAX_WORDS


def _is_long_prose(line: str) -> bool:
    """A partial first line too long for an opening that is not a list item either."""
    return not _ITEM_START.match(line) and len(line.split()) > _OPENING_MAX_WORDS


def clean_title(raw: str) -> str:
    """A point's title: markdown emphasis removed, details after a colon or dash dropped."""
    text = raw.strip()
    bold = re.match(r"^(?:\*\*|__)(.+?)(?:\*\*|__)", text)
    if bold:
        text = bold.group(1)
    text = _EMPHASIS.sub("", text)
    for sep in (":", " - ", " – ", " — "):
        head, found, _ = text.partition(sep)
        if found and head.strip():
            text = head
            break
    text = " ".join(text.split()).strip(" .;,")
    if len(text) > _TITLE_MAX:
        text = text[:_TITLE_MAX].rsplit(" ", 1)[0]
    return text


class SketchParser:
    """Incremental parser of a sketch stream.

    The first non-empty line decides: the marker means a direct answer (everything after it is
    passed through live); a list item starts the outline; a short line ending in ``:`` is a
    preamble and skipped; any other prose is taken as a direct answer without the marker, so a
    model that ignores the format still yields an answer. In an outline, indented lines and
    sub-bullets are details and skipped; the first unindented prose line, a repeated point, or
    the point cap ends it.

    A parser for a framed sketch (``frame``) reads the first prose line before the outline as
    its opening, given when the first item starts, and the prose line that ends the outline as
    its closing (:class:`FrameText`); a closing cut by the token limit is dropped, like a cut
    title, and an outline that lists more than two items past the point cap ends without one
    (the model is looping). A prose line after the items that ends with a colon is not a
    closing but the heading of a further list ("Non-renewable sources are finite:"): the items
    after it are points too, in that ``section``; a heading with no item after it is dropped.
    A framed sketch whose first line is not followed by a list, or runs past 40 words, is
    prose (:attr:`is_prose`): nothing of it is given, and it ends there.
    """

    def __init__(self, max_points: int, *, frame: bool = False) -> None:
        self.max_points = max_points
        self.frame = frame
        self._past_cap = 0
        self.mode = _Mode.UNDECIDED
        self.points: list[str] = []
        self._partial = ""
        self._numbered = True
        self._indent = 0
        self._preamble_seen = False
        # A framed sketch's opening line, held until a list item follows it.
        self._opening: str | None = None
        self._opening_given = False
        # A framed outline's section heading: read and waiting for its first item, then the
        # section of every point after it.
        self._heading: str | None = None
        self._section: str | None = None
        self._seen: set[tuple[str | None, str]] = set()

    @property
    def is_direct(self) -> bool:
        return self.mode is _Mode.DIRECT

    @property
    def is_outline(self) -> bool:
        return self.mode in (_Mode.OUTLINE, _Mode.CLOSING, _Mode.ENDED) and bool(self.points)

    @property
    def is_prose(self) -> bool:
        """A framed sketch that wrote prose, not an outline: the cloud should answer instead."""
        return self.mode is _Mode.PROSE

    @property
    def ended(self) -> bool:
        return self.mode in (_Mode.ENDED, _Mode.PROSE)

    def feed(self, text: str) -> list[SketchEvent]:
        if self.mode is _Mode.DIRECT:
            return [DirectText(text)] if text else []
        if self.ended:
            return []
        self._partial += text
        events: list[SketchEvent] = []
        while "\n" in self._partial and self.mode not in (_Mode.DIRECT, _Mode.ENDED, _Mode.PROSE):
            line, self._partial = self._partial.split("\n", 1)
            events.extend(self._line(line))
        if self._awaiting_opening() and _is_long_prose(self._partial):
            self.mode = _Mode.PROSE
            return events
        events.extend(self._after_opening())
        if self.mode is _Mode.UNDECIDED and (early := _EARLY_MARKER.match(self._partial)):
            self.mode = _Mode.DIRECT
            self._partial = self._partial[early.end() :]
        if self.mode is _Mode.DIRECT and self._partial:
            events.append(DirectText(self._partial))
            self._partial = ""
        return events

    def close(self, *, cut: bool = False) -> list[SketchEvent]:
        """End of stream: the last line may have no newline.

        ``cut``: a token limit ended the stream, so a last line without its newline is a point
        cut mid-title ("3. Create a"); once the outline has points, it is dropped rather than
        expanded from half a title.
        """
        events: list[SketchEvent] = []
        if cut and self.mode in (_Mode.OUTLINE, _Mode.CLOSING):
            self._partial = ""
        if self._partial and self.mode not in (_Mode.DIRECT, _Mode.ENDED, _Mode.PROSE):
            line, self._partial = self._partial, ""
            events.extend(self._line(line, last=True))
        if self.mode in (_Mode.OUTLINE, _Mode.CLOSING):
            self.mode = _Mode.ENDED
        elif self.mode is _Mode.UNDECIDED and self._opening is not None:
            self.mode = _Mode.PROSE  # an opening line and nothing after it
        return events

    def _awaiting_opening(self) -> bool:
        """A framed sketch's first line is being written (no list item, no marker yet)."""
        return self.frame and self.mode is _Mode.UNDECIDED and self._opening is None

    def _after_opening(self) -> list[SketchEvent]:
        """The line after a framed sketch's opening, as soon as its start tells: a list item
        gives the opening (before its title is written); a letter is more prose."""
        if self.mode is not _Mode.UNDECIDED or self._opening is None or self._opening_given:
            return []
        start = self._partial.lstrip()
        if start[:1].isalpha():
            self.mode = _Mode.PROSE
            return []
        if _ITEM_START.match(self._partial):
            self._opening_given = True
            return [FrameText(self._opening, closing=False)]
        return []

    def _line(self, line: str, *, last: bool = False) -> list[SketchEvent]:
        if not line.strip():
            return []
        if self.mode is _Mode.UNDECIDED:
            return self._first_line(line, last=last)
        return self._outline_line(line)

    def _first_line(self, line: str, *, last: bool) -> list[SketchEvent]:
        marker = _MARKER.match(line)
        if marker or line.strip(" *_#:.").lower() == "direct":
            self.mode = _Mode.DIRECT
            rest = marker.group(1).strip() if marker else ""
            # Whatever follows is answer text: pass the remaining partial line through too.
            return [DirectText(rest + ("" if last else "\n"))] if rest else []
        numbered = _NUMBERED.match(line)
        bullet = _BULLET.match(line)
        if numbered or bullet:
            self.mode = _Mode.OUTLINE
            self._numbered = numbered is not None
            self._indent = len((numbered or bullet).group(1))  # type: ignore[union-attr]
            opening: list[SketchEvent] = []
            if self._opening is not None and not self._opening_given:
                self._opening_given = True
                opening.append(FrameText(self._opening, closing=False))
            return opening + self._outline_line(line)
        stripped = line.strip()
        if self.frame:
            if self._opening is None:
                self._opening = stripped
                return []
            self.mode = _Mode.PROSE  # a second line of prose: not an outline
            return []
        if stripped.endswith(":") and len(stripped) < 100 and not self._preamble_seen:
            self._preamble_seen = True
            return []
        self.mode = _Mode.DIRECT
        return [DirectText(line + ("" if last else "\n"))]

    def _outline_line(self, line: str) -> list[SketchEvent]:
        numbered = _NUMBERED.match(line)
        bullet = _BULLET.match(line)
        item = numbered if self._numbered else bullet
        if self.mode is _Mode.CLOSING and item is not None:
            return self._skip_past_cap()
        if item is not None and len(item.group(1)) <= self._indent:
            title = clean_title(item.group(item.lastindex or 0))
            if not title:
                return []
            if self._heading is not None:
                self._section, self._heading = self._heading, None
            key = (self._section, title.casefold())
            if key in self._seen:
                # A small model that repeats a point has started to loop: the outline is over.
                # (The same title under another heading is not a repeat: "Cost" for and against.)
                self.mode = _Mode.ENDED
                return [OutlineEnded()]
            self._seen.add(key)
            self.points.append(title)
            events: list[SketchEvent] = [PointFound(len(self.points) - 1, title, self._section)]
            if len(self.points) >= self.max_points:
                if self.frame:
                    self.mode = _Mode.CLOSING  # items past the cap are skipped
                else:
                    self.mode = _Mode.ENDED
                    events.append(OutlineEnded())
            return events
        if numbered or bullet or line[:1].isspace():
            return []  # a sub-item or a detail line
        if self.frame and _is_heading(line):
            if self.mode is _Mode.CLOSING:
                return self._skip_past_cap()  # the next list is not shown: skipped like an item
            self._heading = line.strip()  # another list follows; a second heading replaces it
            return []
        self.mode = _Mode.ENDED
        if self.frame:
            return [FrameText(line.strip(), closing=True), OutlineEnded()]
        return [OutlineEnded()]

    def _skip_past_cap(self) -> list[SketchEvent]:
        """An item past the point cap. A model that lists on past the cap is looping, not
        closing: stop waiting soon, or the cloud writes to its token limit while the answer
        waits for the sketch."""
        self._past_cap += 1
        if self._past_cap > _PAST_CAP_ITEMS:
            self.mode = _Mode.ENDED
            return [OutlineEnded()]
        return []
