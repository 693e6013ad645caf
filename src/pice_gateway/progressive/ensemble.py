"""Scoring the candidates of one point: which of k expansions the answer shows.

Pure and synchronous, no model calls: the inputs are what the edge already returns per
candidate (body text, ``logprob_mean``, ``finish_reason``) plus the point's title and the
question. Every term is in [0, 1]:

    score = 0.5 * agreement + 0.3 * confidence + 0.2 * relevance
            - 0.4 * cut_off - 0.5 * repetition - 0.5 * restatement

- **agreement**: mean ROUGE-1 F1 (clipped unigram overlap of content words) with the other
  candidates. Choosing the candidate closest to the rest is minimum-Bayes-risk selection, the
  "similarity" criterion of the research: what several samples agree on is less likely to be
  one sample's detour or invention (self-consistency). ROUGE-1 over content words because it is
  cheap, symmetric, length-balanced (F1, not recall, so a long candidate gains nothing by
  covering everything) and what answer-level agreement usually uses; order-sensitive measures
  (ROUGE-L, BLEU) punish the same advice phrased in another order. It gets the largest weight:
  candidate 0 is greedy and the others sampled, so the other criteria lean towards candidate 0
  by construction and agreement is what lets a better sample win at all. With two candidates
  both get the same agreement, and the rest decides.
- **confidence**: ``exp(logprob_mean)``, the geometric-mean token probability (1/perplexity)
  under the model's raw distribution, the "perplexity" criterion. The research's second signal;
  weighted below agreement because it favours short, generic, greedy text. Log-probabilities
  are comparable only under one model: when the candidates come from edges serving different
  models (or adapters), confidence is still reported but weighs nothing, and agreement,
  relevance and the penalties decide. With no logprobs (a cloud expansion) it is 0 for all and
  does not decide.
- **relevance**: the body uses content words of the point's title or the question; saturates
  at three shared words (lexical overlap is a weak signal: it only has to catch a body that
  drifted off topic, not rank two on-topic ones). A small weight for that reason.
- **restatement**: the share of the body's content words above one half that merely repeat the
  title or the question (0 at half, 1 when it says nothing else): a body that restates its
  premise scores high on relevance and says nothing, so overlap is rewarded only up to a point.
- **cut_off**: 1 when the edge stopped at ``max_tokens`` (``finish_reason == "length"``): the
  body ends mid-sentence, which a reader sees at once.
- **repetition**: the share of repeated word trigrams, the usual failure of a small sampled
  model (loops).

An empty body, or a candidate that failed (``finish_reason`` ``error`` or ``cancelled``), is not
eligible; when nothing is eligible the lowest index wins, as a single candidate would have been
shown. Ties go to the lowest candidate index (scores are rounded first so that float noise
cannot break a tie), which keeps the choice deterministic and prefers the greedy candidate 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

W_AGREEMENT = 0.5
W_CONFIDENCE = 0.3
W_RELEVANCE = 0.2
P_CUT_OFF = 0.4
P_REPETITION = 0.5
P_RESTATEMENT = 0.5
# Shared content words at which relevance saturates.
RELEVANT_WORDS = 3
# Above this share of echoed words a body counts as restating its premise.
ECHO_ALLOWED = 0.5

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Function words carry no content: two bodies sharing "the" and "to" do not agree.
# fmt: off
_STOPWORDS = frozenset([
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "does",
    "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "it's", "may",
    "more", "most", "not", "of", "on", "or", "our", "so", "such", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "to", "too", "very", "was", "we", "what",
    "when", "where", "which", "while", "who", "why", "will", "with", "you", "your",
])
# fmt: on
_FAILED = frozenset({"error", "cancelled"})


@dataclass(frozen=True)
class Candidate:
    """One finished candidate of a point, as the edge reported it."""

    index: int
    text: str
    logprob_mean: float | None
    finish_reason: str | None
    # What wrote it (the edge's model and adapter); ``None``: unknown, taken as the same.
    model: str | None = None


@dataclass(frozen=True)
class Scored:
    """A candidate's score and the terms it was made of (all in the ``pice`` report)."""

    index: int
    score: float
    eligible: bool
    agreement: float
    confidence: float
    relevance: float
    restatement: float
    repetition: float
    cut_off: bool


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOPWORDS]


def rouge1_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """Clipped unigram overlap F1 of two word lists (0 when either is empty)."""
    if not a or not b:
        return 0.0
    overlap = sum((Counter(a) & Counter(b)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(a), overlap / len(b)
    return 2 * precision * recall / (precision + recall)


def repetition(text: str) -> float:
    """The share of word trigrams that repeat an earlier one."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _eligible(candidate: Candidate) -> bool:
    return candidate.finish_reason not in _FAILED and bool(content_words(candidate.text))


def comparable_confidence(candidates: Sequence[Candidate]) -> bool:
    """Whether the candidates' log-probabilities can be compared: one model wrote them all."""
    return len({c.model for c in candidates if c.model is not None}) <= 1


def score_candidates(candidates: Sequence[Candidate], *, title: str, question: str) -> list[Scored]:
    """Every candidate's score, in the order given; see the module doc for the formula."""
    bodies = {c.index: content_words(c.text) for c in candidates}
    eligible = [c.index for c in candidates if _eligible(c)]
    premise = set(content_words(title)) | set(content_words(question))
    w_confidence = W_CONFIDENCE if comparable_confidence(candidates) else 0.0
    scored = []
    for c in candidates:
        body = bodies[c.index]
        others = [bodies[i] for i in eligible if i != c.index]
        agreement = sum(rouge1_f1(body, o) for o in others) / len(others) if others else 0.0
        confidence = math.exp(c.logprob_mean) if c.logprob_mean is not None else 0.0
        echoed = sum(w in premise for w in body)
        relevance = min(1.0, echoed / RELEVANT_WORDS) if premise else 0.0
        echo_share = echoed / len(body) if body else 0.0
        restatement = max(0.0, echo_share - ECHO_ALLOWED) / (1.0 - ECHO_ALLOWED)
        repeated = repetition(c.text)
        cut_off = c.finish_reason == "length"
        score = (
            W_AGREEMENT * agreement
            + w_confidence * confidence
            + W_RELEVANCE * relevance
            - P_CUT_OFF * cut_off
            - P_REPETITION * repeated
            - P_RESTATEMENT * restatement
        )
        scored.append(
            Scored(
                index=c.index,
                score=round(score, 6),
                eligible=c.index in eligible,
                agreement=round(agreement, 6),
                confidence=round(confidence, 6),
                relevance=round(relevance, 6),
                restatement=round(restatement, 6),
                repetition=round(repeated, 6),
                cut_off=cut_off,
            )
        )
    return scored


def winner(scored: Sequence[Scored]) -> int:
    """The best eligible candidate's index (lowest index on a tie, or when none is eligible)."""
    if not scored:
        raise ValueError("no candidates to choose from")
    pool = [s for s in scored if s.eligible]
    if not pool:
        return min(s.index for s in scored)
    return min(pool, key=lambda s: (-s.score, s.index)).index
