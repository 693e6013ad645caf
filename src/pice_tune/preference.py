"""Preference pairs from the ensemble's own choices: the data of a preference round.

The gateway's ensemble (:mod:`pice_gateway.progressive.ensemble`) decodes k candidates per
point and shows the best by its score. Here the edge decodes k candidates for every point of
the training outlines (the teacher's, from the expander's data step), and each point becomes
one pair: the candidate the ensemble would show (``chosen``) over one it would not
(``rejected``). A preference round (DPO) on these pairs teaches the edge to write, greedily,
what the ensemble would have picked among its samples — so a single candidate is as good as k.

Two signals decide, in this order:

1. the data filters (:mod:`pice_tune.filters`): a candidate that is cut off, loops, restates
   the premise, continues the title as a fragment or runs past the prompt's word limit is
   never chosen, and is the preferred ``rejected`` (``why`` names the filter);
2. the ensemble's score, among the candidates that pass: the best is ``chosen``. When every
   candidate passes, the lowest-scored is ``rejected`` only if the two differ by at least
   :data:`MIN_GAP` (``why = "score"``); a point whose candidates score alike gives no pair.
   With :attr:`PairRule.length_ratio`, a score-only pair also needs two texts of similar
   length: the score's agreement term favours the longer text (in the first round the chosen
   side of score pairs had 24 words at the median, the rejected 16.5), and DPO learns length
   from such pairs before anything else.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pice.edge_protocol import ErrorEvent, ExpandRequest, PointDoneEvent, parse_expand_event
from pice.errors import UpstreamError
from pice.http.sse import DONE
from pice_gateway.progressive.ensemble import Candidate, Scored, score_candidates
from pice_tune.dataset import PairExample, TuneQuestion
from pice_tune.distill import ask_all, write_records
from pice_tune.filters import Expansion, reject_reason
from pice_tune.jsonl import read_rows

logger = logging.getLogger(__name__)

# Smallest score difference that makes a pair when both candidates pass every filter: the
# score's terms move by ~0.05 between two equally good paraphrases.
MIN_GAP = 0.1


@dataclass(frozen=True)
class CandidateSampling:
    """How the edge is asked: ``k`` candidates per point, the first greedy (what the edge
    shows without an ensemble), the rest at ``temperature``; ``seed`` fixes the samples."""

    k: int = 4
    temperature: float = 0.8
    seed: int = 0
    max_tokens: int = 96
    # Sequences per job (the agent's ``max_sequences``, 16 by default): an outline's points
    # are asked for in groups of ``max_sequences // k``; the shared prefix stays cached.
    max_sequences: int = 16


@dataclass(frozen=True)
class PairRule:
    """When the candidates of a point make a pair (the filters decide first, then these)."""

    min_gap: float = MIN_GAP
    # A score-only pair's shorter text must have at least this share of the longer's words
    # (None: any lengths). Filtered pairs are kept whatever their lengths: their rejected side
    # has a named fault (and ``too_long`` is about length on purpose).
    length_ratio: float | None = None

    def lengths_match(self, chosen: str, rejected: str) -> bool:
        if self.length_ratio is None:
            return True
        a, b = len(chosen.split()), len(rejected.split())
        return min(a, b) >= self.length_ratio * max(a, b)

    def manifest(self) -> dict[str, Any]:
        return {"min_gap": self.min_gap, "length_ratio": self.length_ratio}


@dataclass(frozen=True)
class EdgeConfig:
    base_url: str  # the agent's root, e.g. http://127.0.0.1:8101
    model: str
    api_key: str | None = None


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's verdict on one point's two candidates (``pice_bench.judge``, both orders):
    ``outcome`` is candidate ``a``'s over ``b`` (``win``, ``loss`` or ``tie``), ``a`` being the
    one the ensemble's score ranks first (:func:`judge_targets`)."""

    question_id: str
    index: int
    a: int
    b: int
    outcome: str
    margin: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JudgeVerdict:
        return cls(
            question_id=str(data["question_id"]),
            index=int(data["index"]),
            a=int(data["a"]),
            b=int(data["b"]),
            outcome=str(data["outcome"]),
            margin=float(data.get("margin", 0.0)),
        )


Verdicts = dict[tuple[str, int], JudgeVerdict]


def load_verdicts(path: Path) -> Verdicts:
    """A judged-candidates file (JSONL, one :class:`JudgeVerdict` a line), by (question, point);
    a point judged twice, its last verdict. A verdict whose judge calls failed, or a line cut
    by an interruption, is left out: that point is not judged."""
    verdicts: Verdicts = {}
    for row in read_rows(path):
        if not row.get("failed"):
            verdict = JudgeVerdict.from_json(row)
            verdicts[(verdict.question_id, verdict.index)] = verdict
    return verdicts


@dataclass(frozen=True)
class _Choice:
    best: Scored
    worst: Scored
    why: str  # a data filter's reason, or "score" when every candidate passes them


def _choice(
    question: TuneQuestion,
    titles: Sequence[str],
    index: int,
    candidates: Sequence[dict[str, Any]],
    rule: PairRule,
    min_gap: float,
) -> _Choice | str:
    """The two candidates of point ``index`` a pair would be made of, or why there are none:
    the best-scored that passes the filters, over the worst that fails one, else over the
    worst-scored of like length at least ``min_gap`` below it."""
    scored = score_candidates(
        [
            Candidate(i, str(c["text"]), c.get("logprob_mean"), c.get("finish_reason"))
            for i, c in enumerate(candidates)
        ],
        title=titles[index],
        question=question.question,
    )
    rejects = [
        reject_reason(
            Expansion(
                question.question,
                tuple(titles),
                index,
                str(c["text"]),
                c.get("finish_reason"),
            )
        )
        for c in candidates
    ]
    passing = [s for s in scored if s.eligible and rejects[s.index] is None]
    if not passing:
        return "no_good_candidate"
    best = max(passing, key=lambda s: (s.score, -s.index))
    texts = [str(c["text"]).strip() for c in candidates]
    failing = [s for s in scored if rejects[s.index] is not None]
    if failing:
        worst = min(failing, key=lambda s: (s.score, s.index))
        choice = _Choice(best, worst, str(rejects[worst.index]))
    else:
        below = [
            s
            for s in scored
            if s.index != best.index
            and best.score - s.score >= min_gap
            and texts[s.index] != texts[best.index]
        ]
        if not below:
            return "candidates_alike"
        matched = [s for s in below if rule.lengths_match(texts[best.index], texts[s.index])]
        if not matched:
            return "lengths_apart"
        choice = _Choice(best, min(matched, key=lambda s: (s.score, s.index)), "score")
    if texts[choice.best.index] == texts[choice.worst.index]:
        return "candidates_alike"
    return choice


@dataclass(frozen=True)
class JudgeTarget:
    """Two candidates of one point for the judge: ``a`` the ensemble score's best."""

    a: int
    b: int
    score_a: float
    score_b: float


def judge_targets(
    question: TuneQuestion,
    titles: Sequence[str],
    index: int,
    candidates: Sequence[dict[str, Any]],
    rule: PairRule = PairRule(),
) -> JudgeTarget | None:
    """The two candidates of point ``index`` that the judge is asked about, or None when the
    filters decide (a candidate with a named fault) or there is nothing to decide: the
    ensemble's best over its worst of like length, whatever their score gap, so that the
    judge's verdicts can also be read against the score's."""
    choice = _choice(question, titles, index, candidates, rule, min_gap=0.0)
    if isinstance(choice, str) or choice.why != "score":
        return None
    return JudgeTarget(choice.best.index, choice.worst.index, choice.best.score, choice.worst.score)


def choose_pair(
    question: TuneQuestion,
    titles: Sequence[str],
    index: int,
    candidates: Sequence[dict[str, Any]],
    model: str,
    rule: PairRule = PairRule(),
    verdicts: Verdicts | None = None,
) -> tuple[PairExample | None, str | None]:
    """The pair of point ``index`` from its candidates (each ``text``, ``logprob_mean``,
    ``finish_reason``), or ``(None, why not)``.

    With ``verdicts`` (the judge's, on :func:`judge_targets`), the filters still decide first;
    where every candidate passes them the judge's verdict orients the pair (``why =
    "judge"``) and a tie gives none (``judge_tie``), whatever the score gap."""
    choice = _choice(
        question, titles, index, candidates, rule, 0.0 if verdicts is not None else rule.min_gap
    )
    if isinstance(choice, str):
        return None, choice
    chosen, rejected, why = choice.best, choice.worst, choice.why
    if verdicts is not None and why == "score":
        verdict = verdicts.get((question.id, index))
        if verdict is None or (verdict.a, verdict.b) != (chosen.index, rejected.index):
            return None, "not_judged"
        if verdict.outcome == "tie":
            return None, "judge_tie"
        if verdict.outcome == "loss":
            chosen, rejected = rejected, chosen
        why = "judge"
    return (
        PairExample(
            question_id=question.id,
            question=question.question,
            sketch=tuple(titles),
            index=index,
            chosen=str(candidates[chosen.index]["text"]).strip(),
            rejected=str(candidates[rejected.index]["text"]).strip(),
            chosen_score=round(chosen.score, 6),
            rejected_score=round(rejected.score, 6),
            why=why,
            model=model,
        ),
        None,
    )


def build_pairs(
    question: TuneQuestion,
    raw: dict[str, Any],
    model: str,
    rule: PairRule = PairRule(),
    verdicts: Verdicts | None = None,
) -> tuple[list[PairExample], Counter[str]]:
    """Every point's pair of one question's raw candidates, and why the others gave none."""
    pairs: list[PairExample] = []
    skipped: Counter[str] = Counter()
    titles = list(raw["titles"])
    for index, candidates in enumerate(raw["candidates"]):
        pair, why = choose_pair(question, titles, index, candidates, model, rule, verdicts)
        if pair is not None:
            pairs.append(pair)
            skipped[f"pair:{pair.why}"] += 1
        else:
            skipped[str(why)] += 1
    return pairs, skipped


class EdgeSampler:
    """Asks an edge agent's ``/v1/expand`` for k candidates of every point of an outline.

    ``connect`` gives the agent's address the first time a question has to be asked (it may
    start an embedded agent): a data step whose cache is complete opens no edge at all."""

    def __init__(
        self,
        model: str,
        sampling: CandidateSampling,
        connect: Callable[[], EdgeConfig],
        client: httpx.Client | None = None,
    ) -> None:
        self.model = model
        self.sampling = sampling
        self._connect = connect
        self._config: EdgeConfig | None = None
        self._client = client

    @property
    def base_url(self) -> str | None:
        """The agent asked, or None while none has been."""
        return None if self._config is None else self._config.base_url

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _open(self) -> tuple[EdgeConfig, httpx.Client]:
        if self._config is None:
            self._config = self._connect()
        if self._client is None:
            key = self._config.api_key
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._client = httpx.Client(timeout=httpx.Timeout(600.0), headers=headers)
        return self._config, self._client

    def candidates(self, question: TuneQuestion, titles: Sequence[str]) -> dict[str, Any]:
        """The raw record of one question: its titles and every point's k candidates."""
        s = self.sampling
        found: dict[tuple[int, int], PointDoneEvent] = {}
        group = max(1, s.max_sequences // s.k)
        for start in range(0, len(titles), group):
            request = ExpandRequest(
                question=question.question,
                sketch=list(titles),
                points=list(range(start, min(len(titles), start + group))),
                candidates=s.k,
                max_tokens=s.max_tokens,
                temperature=0.0,
                candidate_temperature=s.temperature,
                seed=s.seed,
            )
            found.update(self._expand(request))
        return {
            "question_id": question.id,
            "titles": list(titles),
            "candidates": [
                [
                    {
                        "text": found[(p, c)].text,
                        "logprob_mean": found[(p, c)].logprob_mean,
                        "finish_reason": found[(p, c)].finish_reason,
                    }
                    for c in range(s.k)
                    if (p, c) in found
                ]
                for p in range(len(titles))
            ],
        }

    def _expand(self, request: ExpandRequest) -> dict[tuple[int, int], PointDoneEvent]:
        # Here, not at the top: `pice tune`'s parser imports this module, and httpx-sse is in
        # the bench extra, which a gateway-only install lacks (pice_cli would drop the command).
        from httpx_sse import connect_sse

        config, client = self._open()
        found: dict[tuple[int, int], PointDoneEvent] = {}
        url = config.base_url.rstrip("/") + "/v1/expand"
        with connect_sse(client, "POST", url, json=request.wire()) as source:
            response = source.response
            if response.status_code != 200:
                response.read()
                raise UpstreamError(
                    f"the edge answered {response.status_code}: {response.text[:300]}"
                )
            for sse in source.iter_sse():
                if sse.data == DONE:
                    break
                event = parse_expand_event(json.loads(sse.data))
                if isinstance(event, PointDoneEvent):
                    found[(event.point, event.candidate)] = event
                elif isinstance(event, ErrorEvent):
                    raise UpstreamError(f"the edge failed: {event.error.message}")
        return found


def outlines_from(raw_cache: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Each question's outline titles from an expander data step's raw cache."""
    return {qid: list(row["titles"]) for qid, row in raw_cache.items() if row.get("titles")}


def describe(raw: dict[str, Any]) -> str:
    points = raw["candidates"]
    return f"{len(points)} points x {max((len(c) for c in points), default=0)} candidates"


def build_pair_dataset(
    sampler: EdgeSampler,
    questions: Sequence[TuneQuestion],
    outlines: dict[str, list[str]],
    out: Path,
    *,
    manifest: dict[str, Any],
    rule: PairRule = PairRule(),
    verdicts: Verdicts | None = None,
    progress: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """The preference data of every training question with an outline; resumable like the
    expander's data step (``<out>.raw.jsonl`` holds each question's candidates). With
    ``verdicts``, the judge decides the pairs the filters leave (:func:`choose_pair`)."""
    train = [q for q in questions if q.split == "train" and q.id in outlines]
    cache = ask_all(
        train,
        out,
        lambda q: sampler.candidates(q, outlines[q.id]),
        lambda raw: len(raw.get("candidates", ())) == len(outlines.get(raw["question_id"], ())),
        describe,
        progress,
    )
    pairs: list[PairExample] = []
    counts: Counter[str] = Counter()  # why points gave no pair; "pair:<why>" for those that did
    for question in train:
        found, why = build_pairs(question, cache[question.id], sampler.model, rule, verdicts)
        pairs.extend(found)
        counts.update(why)
    s = sampler.sampling
    return write_records(
        out,
        pairs,
        Counter({k: v for k, v in counts.items() if not k.startswith("pair:")}),
        {
            **manifest,
            "role": "preference",
            "questions": len(train),
            "edge_model": sampler.model,
            "edge_url": sampler.base_url,  # None: every candidate came from the cache
            "sampling": {
                "k": s.k,
                "temperature": s.temperature,
                "seed": s.seed,
                "max_tokens": s.max_tokens,
                "first": "greedy",
            },
            "pair_rule": rule.manifest() | {"by": "score" if verdicts is None else "judge"},
            "pairs_by_reason": {
                k.removeprefix("pair:"): v
                for k, v in sorted(counts.items())
                if k.startswith("pair:")
            },
        },
    )
