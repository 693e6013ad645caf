"""The raw measurements a run produces: one record per request, one per judged pair."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from pice_bench.questions import Question


class Mode(StrEnum):
    """The systems compared in one run, on the same cloud and the same questions."""

    CLOUD = "cloud-only"
    SOT = "sot-cloud"
    PICE = "pice-progressive"
    PICE_AUTO = "pice-auto"
    PICE_ENSEMBLE = "pice-ensemble"
    # Every model server of the testbed answering whole questions behind one balancer.
    FLEET = "fleet-direct"


class Phase(StrEnum):
    LATENCY = "latency"  # one request at a time: the latency of an idle system
    LOAD = "load"  # open-loop Poisson arrivals at a given rate


@dataclass
class Tokens:
    """Tokens spent on each side for one request."""

    cloud_prompt: int = 0
    cloud_completion: int = 0
    edge_prompt: int = 0
    edge_completion: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.cloud_prompt + other.cloud_prompt,
            self.cloud_completion + other.cloud_completion,
            self.edge_prompt + other.edge_prompt,
            self.edge_completion + other.edge_completion,
        )


@dataclass
class Answer:
    """What one mode returned for one question, and how long it took."""

    text: str = ""
    latency_s: float = 0.0
    ttft_s: float | None = None
    tokens: Tokens = field(default_factory=Tokens)
    points: list[str] = field(default_factory=list)
    # What the system itself reported: the gateway's ``pice`` extension (mode chosen, timings).
    served_mode: str | None = None
    extension: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def cut_off(self) -> bool:
        """Whether the token budget cut the answer short.

        The stream ended on ``length``, or, for an outlined PICE answer (whose stream ends on
        ``stop`` once every point is done), any point's expansion did, as its ``pice`` report
        says. The SoT baseline reports ``length`` when any of its own streams did.
        """
        if self.finish_reason == "length":
            return True
        points = (self.extension or {}).get("points") or []
        return any(isinstance(p, dict) and p.get("finish_reason") == "length" for p in points)


@dataclass
class RequestRecord:
    mode: Mode
    phase: Phase
    question_id: str
    category: str
    suits_points: bool
    answer: Answer
    rate: float | None = None  # arrivals per second in the load phase
    scheduled_s: float | None = None  # the arrival offset within its load step
    started_s: float | None = None  # when it was actually sent (client lag shows here)
    # 0-based slot of this mode in its question's (shuffled) mode order, latency phase only.
    position: int | None = None

    @classmethod
    def of(
        cls,
        mode: Mode,
        phase: Phase,
        question: Question,
        answer: Answer,
        *,
        rate: float | None = None,
        scheduled_s: float | None = None,
        started_s: float | None = None,
    ) -> RequestRecord:
        return cls(
            mode=mode,
            phase=phase,
            question_id=question.id,
            category=question.category,
            suits_points=question.suits_points,
            answer=answer,
            rate=rate,
            scheduled_s=scheduled_s,
            started_s=started_s,
        )

    @property
    def ok(self) -> bool:
        return self.answer.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JudgeRecord:
    """One question judged in both orders: candidate (PICE) against baseline (cloud-only).

    Verdicts and grades are as the judge saw the answers: in the first order the candidate is
    A, in the second it is B. The grades are absent when the judge gave none (its verdict was
    read instead); ``margin`` is the candidate's summed lead over both orders.
    """

    question_id: str
    category: str
    suits_points: bool
    candidate: Mode
    baseline: Mode
    verdict_candidate_first: str
    verdict_candidate_second: str
    outcome: str
    raw_first: str
    raw_second: str
    # Defaulted: a judgment read from verdicts alone, or an older results file, has no grades.
    scores_candidate_first: tuple[int, int] | None = None  # (A, B)
    scores_candidate_second: tuple[int, int] | None = None  # (A, B)
    margin: float = 0
    # Expected grades (A, B) per order, when the judge's server returned token probabilities
    # (``pice_bench.expected_grades``); ``margin`` and ``outcome`` then come from these.
    expected_candidate_first: tuple[float, float] | None = None
    expected_candidate_second: tuple[float, float] | None = None
    # Whether the budget cut either answer (``Answer.cut_off``); the judge is not told.
    candidate_cut: bool = False
    baseline_cut: bool = False
    # The two answers were the same text (e.g. ``pice`` routed the question to the cloud with
    # the user's own messages): a tie by definition, the judge not asked.
    identical: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
