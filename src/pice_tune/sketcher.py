"""The sketcher's data: filters over the teacher's sampled outlines, and the choice of one.

Pure functions, in the style of :mod:`pice_tune.filters`: each filter returns the reason it
rejects a sample, or ``None``; the first that fires names the drop. :func:`choose` then picks
one kept sample per question by the rule "brief yet complete" (docs/fine-tuning.md, "The
sketcher"), using the other samples of the same question as the reference: sampled outlines
of one question agree on the points that matter and differ on the idiosyncratic ones, so
agreement with them is a self-consistency estimate that needs no judge.

1. **Complete and focused**: the highest F1 of *recall* (the share of the other samples'
   points that some point of this one covers: nothing the teacher usually plans is missing)
   and *precision* (the share of this sample's points that some other sample also has: no
   padding, no idiosyncratic detours). Recall alone rewards the longest outline, which covers
   more by sheer number (measured: it chose outlines longer than the greedy ones).
2. **Brief**: among equal scores, the fewest title words, then the fewest points.
3. Then the earliest sample (the greedy one is sample 0), so the choice is deterministic.

Two titles "cover" each other when their content words overlap (:func:`titles_overlap`):
lexical, so "Provide sunlight" and "Keep it in a bright spot" are different points to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from pice_tune.filters import first_rejection, stem, words

# The outline prompt's own limits (pice_gateway.progressive.sketch: "3 to 8 points, ...,
# 2 to 6 words each"); tests/tune/test_sketcher.py checks the prompt still says so.
MIN_POINTS = 3
MAX_POINTS = 8
TITLE_MAX_WORDS = 6
# Two titles overlap when at least this share of the shorter one's content words (those not
# already in the question) is in the other: "Less caffeine" / "Avoid caffeine late".
OVERLAP_SHARE = 0.5
# A title restates the question when it has at least this many content words, all of them
# the question's ("Keep houseplant alive" for "How can I keep a houseplant alive ...?").
RESTATE_MIN_WORDS = 2

# Function words, and the light verbs outline titles open with ("Use bins", "Pack snacks"),
# which say nothing about which point a title is: "Pack water" and "Pack snacks" differ.
_STOPWORDS = (
    "a an and are as at be by can do does for from how i if in into is it its my of on or "
    "our should so that the their them then there these they this to was we were what when "
    "where which while who why will with you your "
    "add avoid bring carry check choose create get have keep make pack provide set take use"
)
STOPWORDS = frozenset(_STOPWORDS.split(" "))


@dataclass(frozen=True)
class SketchSample:
    """One sampled outline of one question, with what the filters need to judge it.

    A *framed* sample answered the framed prompt (``progressive.frame``): an opening line, the
    outline, a closing sentence. Its frame is what the gateway's parser gave (``None`` where
    it gave none), and ``sections`` whether the outline came in more than one list.
    """

    question: str
    points: tuple[str, ...]  # the titles as the gateway's parser reads them; () if not an outline
    finish_reason: str | None
    framed: bool = False
    opening: str | None = None
    closing: str | None = None
    sections: bool = False


def content_stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words(text) if w not in STOPWORDS)


def _topic_free(title: str, question: str) -> frozenset[str]:
    """A title's content stems less the question's (the topic every point shares); all of
    them if nothing is left, so a title made only of topic words still compares."""
    own = content_stems(title)
    return (own - content_stems(question)) or own


def titles_overlap(a: str, b: str, question: str) -> bool:
    x, y = _topic_free(a, question), _topic_free(b, question)
    if not x or not y:
        return False
    return len(x & y) / min(len(x), len(y)) >= OVERLAP_SHARE


def not_outline(s: SketchSample) -> str | None:
    return "not_outline" if not s.points else None


def truncated(s: SketchSample) -> str | None:
    """Cut off by the token cap: the last point may be half a title, more may have followed."""
    return "truncated" if s.finish_reason == "length" else None


def no_opening(s: SketchSample) -> str | None:
    """A framed sample whose outline starts with no opening line before it."""
    return "no_opening" if s.framed and not s.opening else None


def no_closing(s: SketchSample) -> str | None:
    """A framed sample with no closing sentence: it stopped after the list, or listed past
    the point cap until the parser gave up on it (the model looping)."""
    return "no_closing" if s.framed and not s.closing else None


def sectioned(s: SketchSample) -> str | None:
    """A framed outline in several lists under headings: the gateway reads it, but the
    completion the sketcher learns is one opening, one list, one closing."""
    return "sections" if s.framed and s.sections else None


def too_few_points(s: SketchSample) -> str | None:
    return "too_few_points" if len(s.points) < MIN_POINTS else None


def too_many_points(s: SketchSample) -> str | None:
    return "too_many_points" if len(s.points) > MAX_POINTS else None


def long_title(s: SketchSample) -> str | None:
    return "long_title" if any(len(words(t)) > TITLE_MAX_WORDS for t in s.points) else None


def restated_question(s: SketchSample) -> str | None:
    """A point that is the question again ("Keep houseplant alive"): it plans nothing."""
    question = content_stems(s.question)
    for title in s.points:
        own = content_stems(title)
        if len(own) >= RESTATE_MIN_WORDS and own <= question:
            return "restated_question"
    return None


def overlapping_titles(s: SketchSample) -> str | None:
    """Two points about the same thing: the edge would expand it twice."""
    for i, a in enumerate(s.points):
        for b in s.points[i + 1 :]:
            if titles_overlap(a, b, s.question):
                return "overlapping_titles"
    return None


SketchFilter = Callable[[SketchSample], str | None]
SKETCH_FILTERS: tuple[SketchFilter, ...] = (
    not_outline,
    truncated,
    no_opening,
    no_closing,
    sectioned,
    too_few_points,
    too_many_points,
    long_title,
    restated_question,
    overlapping_titles,
)


def reject_reason(s: SketchSample) -> str | None:
    return first_rejection(SKETCH_FILTERS, s)


def outline_key(points: Sequence[str]) -> tuple[str, ...]:
    return tuple(" ".join(words(p)) for p in points)


def duplicate_samples(
    samples: Sequence[SketchSample], rejected: Set[int] = frozenset()
) -> set[int]:
    """Indices of samples whose outline repeats an earlier sample's (the later is dropped).

    Samples in ``rejected`` (dropped by a filter) are left out: a complete sample is not a
    duplicate of an earlier copy of its list that was cut off or, framed, lacked its closing.
    """
    seen: set[tuple[str, ...]] = set()
    out: set[int] = set()
    for i, s in enumerate(samples):
        if i in rejected:
            continue
        key = outline_key(s.points)
        if s.points and key in seen:
            out.add(i)
        seen.add(key)
    return out


def covered_share(points: Sequence[str], by: Sequence[str], question: str) -> float:
    """Share of ``points`` that some title of ``by`` overlaps (0 for no points)."""
    if not points:
        return 0.0
    return sum(any(titles_overlap(t, p, question) for t in by) for p in points) / len(points)


def title_words(points: Sequence[str]) -> int:
    return sum(len(words(t)) for t in points)


@dataclass(frozen=True)
class Choice:
    index: int  # of the chosen sample
    recall: float  # share of the other samples' points it covers
    precision: float  # share of its points another sample has

    @property
    def f1(self) -> float:
        total = self.recall + self.precision
        return 0.0 if total == 0 else 2 * self.recall * self.precision / total


def agreement(samples: Sequence[SketchSample], index: int) -> Choice:
    """Sample ``index`` measured against every *other* sample that is an outline, kept or
    not: one dropped for its form (a long title, a cut-off last line) still shows which points
    the teacher thinks belong to the answer."""
    mine = samples[index]
    others = [s.points for j, s in enumerate(samples) if j != index and s.points]
    pool = [p for other in others for p in other]
    return Choice(
        index=index,
        recall=covered_share(pool, mine.points, mine.question),
        precision=covered_share(mine.points, pool, mine.question),
    )


def choose(samples: Sequence[SketchSample], kept: Sequence[int]) -> Choice | None:
    """The kept sample that is most complete and focused, then briefest (module docstring)."""
    if not kept:
        return None
    choices = [agreement(samples, i) for i in kept]

    def rank(c: Choice) -> tuple[float, int, int, int]:
        points = samples[c.index].points
        # Rounded so that float noise never outranks brevity.
        return (-round(c.f1, 9), title_words(points), len(points), c.index)

    return min(choices, key=rank)
