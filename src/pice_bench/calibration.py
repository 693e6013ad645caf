"""How far a judge can be trusted: position bias, length bias and accuracy on known pairs.

Every pair is judged in both orders (x as answer A, then as answer B). From the two
judgments:

- *position-following*: the same position won both times (``A``/``A`` or ``B``/``B``): the
  verdict followed the position, not the answer;
- *order agreement*: the same answer won both times, or both were ties;
- *position bonus*: the mean of (grade A − grade B) over both orders, in grade points; a fair
  judge's is 0 whatever the answers;
- *accuracy*: on pairs with a known better answer, the share in which it wins once both orders
  are combined (and the share of single orders in which it wins);
- *length bias*: a correct answer against the same answer padded with words that add nothing;
  a judge free of length bias never prefers the padded one.

The same order statistics and the grade histogram are computed from a run's own judgments
(:func:`judgment_diagnostics`), which costs no extra calls. :func:`calibrate` runs the
calibration pairs of :mod:`.calibration_pairs` against any judge.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pice_bench.calibration_pairs import CLEAR, HELDOUT, REASONABLE
from pice_bench.records import JudgeRecord
from pice_bench.winrate import Judgment, Outcome, Verdict, combine, combined_margin

# A judge call: (question, answer A, answer B) -> the judgment.
JudgeFn = Callable[[str, str, str], Awaitable[Judgment]]
# Pairs judged at once; a local judge serves them one batch at a time anyway.
CONCURRENCY = 4

PADDING = (
    " To sum up, this is the answer to the question that was asked. It is worth keeping in mind "
    "that there are many aspects to consider and that every situation is different, so the "
    "details may vary. Overall, the points above cover the question, and it is always a good "
    "idea to think carefully about it. In conclusion, the answer above is the answer."
)


def padded(answer: str) -> str:
    """``answer`` made longer without being made better: filler that says nothing new."""
    return answer.rstrip() + "\n\n" + PADDING.strip()


@dataclass(frozen=True)
class OrderStats:
    """Both-order statistics over ``pairs`` pairs (see the module doc)."""

    pairs: int
    position_following: float
    order_agreement: float
    position_bonus: float
    # How often each grade 1–10 was given, over both answers and both orders.
    grades: dict[int, int] = field(default_factory=dict)

    @property
    def commonest_grade_share(self) -> float:
        total = sum(self.grades.values())
        return max(self.grades.values()) / total if total else float("nan")


def order_stats(pairs: Sequence[tuple[Judgment, Judgment]]) -> OrderStats:
    """``pairs``: (judgment with x as A, judgment with x as B) for each pair."""
    if not pairs:
        nan = float("nan")
        return OrderStats(0, nan, nan, nan)
    follows = agrees = 0
    bonus: list[float] = []
    grades: Counter[int] = Counter()
    for first, second in pairs:
        v1, v2 = first.verdict, second.verdict
        follows += v1 == v2 and v1 in (Verdict.A, Verdict.B)
        agrees += (v1, v2) in {(Verdict.A, Verdict.B), (Verdict.B, Verdict.A)} or (
            v1 is Verdict.TIE and v2 is Verdict.TIE
        )
        for j in (first, second):
            if j.expected is not None:  # the finer measure of the same bonus
                bonus.append(j.expected[0] - j.expected[1])
            elif j.scores is not None:
                bonus.append(j.scores[0] - j.scores[1])
            if j.scores is not None:
                grades.update(j.scores)
    return OrderStats(
        pairs=len(pairs),
        position_following=follows / len(pairs),
        order_agreement=agrees / len(pairs),
        position_bonus=sum(bonus) / len(bonus) if bonus else float("nan"),
        grades=dict(sorted(grades.items())),
    )


def judgment_diagnostics(records: Sequence[JudgeRecord]) -> OrderStats:
    """The order statistics of a run's own judgments (candidate shown as A, then as B); pairs
    of identical answers were never shown to the judge and are left out."""
    return order_stats(
        [
            (
                Judgment(
                    Verdict(r.verdict_candidate_first),
                    r.scores_candidate_first,
                    r.expected_candidate_first,
                ),
                Judgment(
                    Verdict(r.verdict_candidate_second),
                    r.scores_candidate_second,
                    r.expected_candidate_second,
                ),
            )
            for r in records
            if not r.identical
        ]
    )


@dataclass(frozen=True)
class Calibration:
    """A judge measured on pairs with known answers (see the module doc)."""

    known_better: int
    accuracy: float  # the better answer won, both orders combined
    single_order_accuracy: float  # the better answer won in one order on its own
    padded_pairs: int
    padded_wins: int  # the padded answer won: length bias
    original_wins: int
    orders: OrderStats  # over every calibration pair
    # (set, question, outcome for x, margin) per pair, for the record.
    pairs: list[tuple[str, str, str, float]] = field(default_factory=list)

    @property
    def length_bias(self) -> float:
        """Share of padded-vs-original pairs won by the padded answer."""
        return self.padded_wins / self.padded_pairs if self.padded_pairs else float("nan")


def calibration_pairs() -> list[tuple[str, str, str, str]]:
    """(set, question, x, y): known-better pairs with x the better answer, padded pairs with x
    the padded one, and the reasonable pairs (no known better)."""
    known = [("known-better", q, better, worse) for q, better, worse, _ in [*CLEAR, *HELDOUT]]
    originals = [(q, good) for q, good, _, _ in [*CLEAR, *HELDOUT]]
    originals += [(q, a) for q, a, _ in REASONABLE]
    pads = [("padded", q, padded(a), a) for q, a in originals]
    return known + pads + [("reasonable", q, a, b) for q, a, b in REASONABLE]


async def calibrate(judge: JudgeFn, *, concurrency: int = CONCURRENCY) -> Calibration:
    """Judge every calibration pair in both orders and measure the judge."""
    pairs = calibration_pairs()
    gate = asyncio.Semaphore(concurrency)

    async def both(question: str, x: str, y: str) -> tuple[Judgment, Judgment]:
        async with gate:
            return await judge(question, x, y), await judge(question, y, x)

    judged = await asyncio.gather(*(both(q, x, y) for _, q, x, y in pairs))
    return summarise(pairs, judged)


def summarise(
    pairs: Sequence[tuple[str, str, str, str]], judged: Sequence[tuple[Judgment, Judgment]]
) -> Calibration:
    outcomes = [combine(first, second) for first, second in judged]
    known = [i for i, p in enumerate(pairs) if p[0] == "known-better"]
    pads = [i for i, p in enumerate(pairs) if p[0] == "padded"]
    single = [judged[i][0].margin(candidate_is_a=True) > 0 for i in known]
    single += [judged[i][1].margin(candidate_is_a=False) > 0 for i in known]
    return Calibration(
        known_better=len(known),
        accuracy=sum(outcomes[i] is Outcome.WIN for i in known) / len(known),
        single_order_accuracy=sum(single) / len(single),
        padded_pairs=len(pads),
        padded_wins=sum(outcomes[i] is Outcome.WIN for i in pads),
        original_wins=sum(outcomes[i] is Outcome.LOSS for i in pads),
        orders=order_stats(judged),
        pairs=[
            (
                p[0],
                p[1],
                o.value,
                combined_margin(first, second),
            )
            for p, o, (first, second) in zip(pairs, outcomes, judged, strict=True)
        ],
    )
