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

A request's token limit (``body_tokens``, :func:`~pice_gateway.progressive.spec.answer_budget`)
is spent in point order: a point's share is the server's cap or what the points before it left
of the limit, whichever is less, known when its turn comes. A point that wrote more than that
is shown up to its share's last full sentence and ends the answer (:attr:`Merger.exhausted`);
no later point is shown. Tokens are counted as the sources report them: a body's deltas (about
a token each) while it streams, its ``tokens`` once done; a done body whose deltas were not
seen (an ensemble's choice) is cut in proportion to its characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # Deltas of the current attempt (about one token each), and the attempt's length after
    # each of them (``None`` once a done text replaced what the deltas said).
    pieces: int = 0
    ends: list[int] | None = field(default_factory=list)
    # The source's token count once done (``None``: count the deltas).
    tokens: int | None = None
    # The point's token share, set when its turn comes: its own cap (the edge stops there) or,
    # when less, what the limit left (``limit``: the merger cuts there; ``None``: not bound).
    cap: int | None = None
    limit: int | None = None
    turn: bool = False

    def restart(self) -> None:
        self.attempt = ""
        self.base = "" if not self.sent else None
        self.pieces, self.ends = 0, []

    def add(self, text: str) -> None:
        # Bodies are kept without leading space; ``Merger._flush`` puts one after the header.
        self.attempt = (self.attempt + text).lstrip()
        self.pieces += 1
        if self.ends is not None:
            self.ends.append(len(self.attempt))

    def finish(self, text: str | None, tokens: int | None, *, cut: bool) -> None:
        """The attempt is complete (``cut``: by its token share): settle what is shown."""
        self.done = True
        self.tokens = tokens
        if text is not None and text != self.attempt:
            self.attempt, self.ends = text, None
        over = self.over_cap()
        self._settle(self._capped(self._display()), cut=cut or over)

    def written(self) -> int:
        """The attempt's tokens, as far as they are known."""
        return self.pieces if self.tokens is None else max(self.tokens, self.pieces)

    def over_cap(self) -> bool:
        """It wrote more than what the limit left it."""
        return self.limit is not None and self.written() > self.limit

    def take_share(self, cap: int | None, *, limit: bool) -> None:
        """The point's turn came with ``cap`` tokens to spend (``limit``: what the request's
        limit left, less than its own cap); a done body that wrote more is shown up to there,
        ended on its last full sentence."""
        self.turn, self.cap = True, cap
        self.limit = cap if limit else None
        if self.done and self.over_cap():
            self._settle(self._capped(self._display()), cut=True)

    def body(self) -> str:
        """The body text as far as it may be shown (never shorter than what was sent)."""
        if self.final is not None:
            display = self.final
        else:
            attempt = self._capped(self._display())
            if attempt is None:
                return self.sent
            display = visible(attempt, settled=self._near_cap(), floor=len(self.sent))
        return display if display.startswith(self.sent) else self.sent

    def _settle(self, display: str | None, *, cut: bool) -> None:
        if display is None:  # the new attempt said no more than what was already sent
            self.final = self.sent
            return
        shown = tidy(display, cut=cut, floor=len(self.sent))
        self.final, self.trimmed = shown.text, shown.trimmed

    def _near_cap(self) -> bool:
        """Close enough to its share that an unfinished sentence is held back."""
        return self.cap is not None and self.pieces >= hold_from(self.cap)

    def _capped(self, display: str | None) -> str | None:
        """``display`` without what the attempt wrote past the point's share."""
        if display is None or self.limit is None or not self.over_cap():
            return display
        keep = self.limit
        if self.ends is not None and len(self.ends) >= keep:
            end = self.ends[keep - 1] if keep > 0 else 0
        else:  # the deltas were not all seen: in proportion to the characters
            end = len(self.attempt) * keep // self.written()
        return display[: len(display) - len(self.attempt) + end]

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

    def __init__(self, point_tokens: int | None = None, body_tokens: int | None = None) -> None:
        # A point's token share at most (from :func:`hold_from` deltas on, a live body shows
        # only whole sentences, so a cut at the share leaves no half sentence on screen), and
        # what the shown bodies may take together (``None``: no limit but each point's own).
        self._point_tokens = point_tokens
        self._left = body_tokens
        self._points: list[_Point] = []
        self._current = 0
        self._total: int | None = None
        self._exhausted = False

    @property
    def finished(self) -> bool:
        return self._exhausted or (self._total is not None and self._current >= self._total)

    @property
    def exhausted(self) -> bool:
        """The request's limit ended the answer: a point was cut at what was left of it, or
        nothing was left for the next one; no later point is shown."""
        return self._exhausted

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
        self._points[index].add(_clean(text))
        return self._flush() if index == self._current else ""

    def restart(self, index: int) -> None:
        """A new attempt at ``index`` begins (its previous source failed)."""
        self._points[index].restart()

    def done(
        self, index: int, text: str | None = None, *, cut: bool = False, tokens: int | None = None
    ) -> str:
        """Point ``index`` is complete; ``text`` (when given) is its authoritative full body and
        ``tokens`` its length as the source counted it (else its deltas are counted); ``cut``:
        its source stopped at the point's token share (the body is then ended on its last full
        sentence, :mod:`~pice_gateway.progressive.tidy`)."""
        point = self._points[index]
        if point.done:  # closed when it reached what the limit left it (shown already)
            return ""
        point.finish(None if text is None else _clean(text).lstrip(), tokens, cut=cut)
        return self._flush() if index == self._current else ""

    def trimmed(self, index: int) -> Trimmed | None:
        """Why point ``index``'s shown body is shorter than its source wrote, once done."""
        return self._points[index].trimmed

    def shown(self, index: int) -> bool:
        """Whether point ``index``'s header went out (a point after the limit's cut: never)."""
        return self._points[index].header_sent

    def close_sketch(self) -> str:
        """The sketch named all its points."""
        self._total = len(self._points)
        return self._flush()

    def text_of(self, index: int) -> str:
        return self._points[index].body().strip()

    def _flush(self) -> str:
        out: list[str] = []
        while not self._exhausted and self._current < len(self._points):
            point = self._points[self._current]
            if not point.turn and not self._take_share(point):
                break
            if not point.done and point.over_cap():
                # Live past what the limit left it: the answer ends here, not at its source's end.
                point.finish(None, None, cut=True)
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
            if self._left is not None:
                written = point.written()
                self._left -= written if point.cap is None else min(written, point.cap)
                self._exhausted = point.over_cap()
        return "".join(out)

    def _take_share(self, point: _Point) -> bool:
        """Give the point whose turn came its share; ``False``: the limit left it none."""
        own, left = self._point_tokens, self._left
        if left is not None and left <= 0:
            self._exhausted = True
            return False
        if left is not None and (own is None or left < own):
            point.take_share(left, limit=True)
        else:
            point.take_share(own, limit=False)
        return True

    def _opens_section(self, index: int) -> bool:
        section = self._points[index].section
        return section is not None and (index == 0 or self._points[index - 1].section != section)
