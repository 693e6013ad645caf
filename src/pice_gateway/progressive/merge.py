"""Merging point expansions into one answer that streams in point order.

Point ``k`` streams live while it decodes once points ``0..k-1`` are done; later points are
held until their turn and then flushed at once. Each point renders as
``"{n}. **{title}**: {body}\\n"``; its header goes out as soon as the sketch names it, before
any edge has produced a token, which is what makes the first byte early. The first point of a
further section (a framed sketch's second list) is preceded by its heading, as a paragraph.

A point whose source fails is restarted elsewhere. Text already sent cannot be taken back, so
the new attempt is matched against it: while the new text repeats what was sent (greedy
decoding on the same model usually does), nothing is sent; once it goes further, only the new
part is; if it diverges, the sent part stays and the new attempt follows an ellipsis.

A body is shown only up to a loop in it, and a body cut by its token share ends on its last
full sentence (:mod:`~pice_gateway.progressive.tidy`). Text sent cannot be taken back, so a
live body within :data:`HOLD_TOKENS` of its share (at most its last third) shows whole sentences
only: if the share then cuts it, the half sentence was never sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pice_gateway.progressive.tidy import Trimmed, tidy, visible

_RESUME_SEPARATOR = " … "
# How close to its token share (in deltas, about a token each) a live body starts holding back
# its unfinished sentence: about one of the edge model's sentences (20-30 tokens), and never
# more than the last third of the share, so that a small share still streams.
HOLD_TOKENS = 24


def hold_from(point_tokens: int) -> int:
    """The delta of a point with a ``point_tokens`` share from which it shows whole sentences."""
    return point_tokens - min(HOLD_TOKENS, point_tokens // 3)


@dataclass
class _Point:
    title: str
    section: str | None = None
    attempt: str = ""
    # The body to display is ``base + attempt``; ``None`` while a restarted attempt is still
    # being matched against what was already sent.
    base: str | None = ""
    sent: str = ""
    header_sent: bool = False
    done: bool = False
    # The body as shown once done (:func:`tidy`), and why it is shorter than the model's.
    final: str | None = None
    trimmed: Trimmed | None = None
    # Deltas of the current attempt (about one token each), and whether it is close enough to
    # its token share that an unfinished sentence is held back (it may be cut there).
    pieces: int = 0
    near_cap: bool = False

    def restart(self) -> None:
        self.attempt = ""
        self.base = "" if not self.sent else None
        self.pieces, self.near_cap = 0, False

    def finish(self, *, cut: bool) -> None:
        """The attempt is complete (``cut``: by its token share): settle what is shown."""
        self.done = True
        display = self._display()
        if display is None:  # the new attempt said no more than what was already sent
            self.final = self.sent
            return
        shown = tidy(display, cut=cut, floor=len(self.sent))
        self.final, self.trimmed = shown.text, shown.trimmed

    def body(self) -> str:
        """The body text as far as it may be shown (never shorter than what was sent)."""
        if self.final is not None:
            display = self.final
        else:
            attempt = self._display()
            if attempt is None:
                return self.sent
            display = visible(attempt, settled=self.near_cap, floor=len(self.sent))
        return display if display.startswith(self.sent) else self.sent

    def _display(self) -> str | None:
        """``base + attempt``, or ``None`` while a restarted attempt repeats what was sent."""
        if self.base is None:
            if self.sent.startswith(self.attempt):
                return None
            if self.attempt.startswith(self.sent):
                self.base = ""
            else:
                self.base = self.sent + _RESUME_SEPARATOR
        return self.base + self.attempt


def _clean(text: str) -> str:
    # A body stays on its list item's line.
    return text.replace("\r", "").replace("\n", " ")


class Merger:
    """Turns point events, in any order, into answer text in point order.

    Every method returns the text that may be sent to the client now ("" for none). Pure and
    synchronous: the pipeline calls it from one event loop, so no locking is needed.
    """

    def __init__(self, point_tokens: int | None = None) -> None:
        # A point's token share; from :func:`hold_from` deltas on, a live body shows only whole
        # sentences, so a cut at the share leaves no half sentence on screen.
        self._hold_after = None if point_tokens is None else hold_from(point_tokens)
        self._points: list[_Point] = []
        self._current = 0
        self._total: int | None = None

    @property
    def finished(self) -> bool:
        return self._total is not None and self._current >= self._total

    @property
    def titles(self) -> list[str]:
        return [point.title for point in self._points]

    def add_point(self, index: int, title: str, section: str | None = None) -> str:
        if index != len(self._points):
            raise ValueError(
                f"points must be added in order: got {index}, have {len(self._points)}"
            )
        self._points.append(_Point(title, section))
        return self._flush()

    def delta(self, index: int, text: str) -> str:
        point = self._points[index]
        # Bodies are kept without leading space; ``_flush`` puts one after the header.
        point.attempt = (point.attempt + _clean(text)).lstrip()
        point.pieces += 1
        point.near_cap = self._hold_after is not None and point.pieces >= self._hold_after
        return self._flush() if index == self._current else ""

    def restart(self, index: int) -> None:
        """A new attempt at ``index`` begins (its previous source failed)."""
        self._points[index].restart()

    def done(self, index: int, text: str | None = None, *, cut: bool = False) -> str:
        """Point ``index`` is complete; ``text`` (when given) is its authoritative full body;
        ``cut``: its source stopped at the point's token share (the body is then ended on its
        last full sentence, :mod:`~pice_gateway.progressive.tidy`)."""
        point = self._points[index]
        if text is not None:
            point.attempt = _clean(text).lstrip()
        point.finish(cut=cut)
        return self._flush() if index == self._current else ""

    def trimmed(self, index: int) -> Trimmed | None:
        """Why point ``index``'s shown body is shorter than its source wrote, once done."""
        return self._points[index].trimmed

    def close_sketch(self) -> str:
        """The sketch named all its points."""
        self._total = len(self._points)
        return self._flush()

    def text_of(self, index: int) -> str:
        return self._points[index].body().strip()

    def _flush(self) -> str:
        out: list[str] = []
        while self._current < len(self._points):
            point = self._points[self._current]
            if not point.header_sent:
                if self._opens_section(self._current):
                    out.append(f"\n{point.section}\n\n")
                out.append(f"{self._current + 1}. **{point.title}**:")
                point.header_sent = True
            body = point.body()
            new = body[len(point.sent) :]
            if new:
                if not point.sent:
                    out.append(" ")
                out.append(new)
                point.sent = body
            if not point.done:
                break
            out.append("\n")
            self._current += 1
        return "".join(out)

    def _opens_section(self, index: int) -> bool:
        section = self._points[index].section
        return section is not None and (index == 0 or self._points[index - 1].section != section)
