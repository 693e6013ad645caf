"""The router's pure core: a logistic-regression head over a sentence embedding.

The decision is ``sigmoid(w · e + b) >= threshold`` on the L2-normalised embedding ``e`` of the
text the router reads (:func:`route_text`): a dot product, microseconds. The weights, the
threshold tuned on the development set, and where they came from (encoder, data hash, scores)
live in one JSON file that ships with the package (``weights.json``); ``pice router train``
writes it again from the shipped data.

Early exits: the weights may also hold a head per exit block, over the embedding after that
many transformer blocks. :meth:`RouterWeights.decide_staged` reads the encoder's stages in
turn and stops at the first exit whose head is at least ``exit_confidence`` sure either way;
otherwise the final head decides, exactly as without exits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pice.openai_protocol import ChatMessage

Route = Literal["outline", "direct"]
BUNDLED_WEIGHTS = Path(__file__).with_name("weights.json")
# What the encoder reads at most (tokens): the end of a long message, where the ask usually is.
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class RouteDecision:
    """What the router decided, for the path choice and the ``pice`` report."""

    route: Route
    # P(outline suits the question), from the logistic head.
    score: float
    threshold: float
    version: str
    ms: float = 0.0
    # The block whose exit head decided (``score`` is then that head's); None: the final head.
    exit_block: int | None = None

    @property
    def decided_at(self) -> str:
        """Where the decision was made: ``block N`` (an exit) or ``final`` (the whole encoder)."""
        return "final" if self.exit_block is None else f"block {self.exit_block}"

    def report(self) -> dict[str, Any]:
        return {
            "decision": self.route,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "version": self.version,
            "exit_block": self.exit_block,
            "ms": round(self.ms, 2),
        }


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class ExitHead:
    """A logistic head over the embedding after the encoder's first ``block`` blocks."""

    block: int
    coef: tuple[float, ...]
    intercept: float

    @cached_property
    def _coef_array(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.coef, dtype=np.float64)

    def score(self, embedding: npt.NDArray[np.float32]) -> float:
        return _sigmoid(float(np.dot(self._coef_array, embedding)) + self.intercept)


@dataclass(frozen=True)
class RouterWeights:
    """A trained head: ``coef`` over the encoder's embedding, ``intercept``, ``threshold``."""

    version: str
    encoder: str
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    # Provenance and measured scores (data sha256, counts, dev accuracy, ...).
    meta: dict[str, Any] = field(default_factory=dict)
    # Early exits, in block order, and how sure an exit head must be to decide.
    exits: tuple[ExitHead, ...] = ()
    exit_confidence: float = 0.95

    def __post_init__(self) -> None:
        blocks = [e.block for e in self.exits]
        if blocks != sorted(set(blocks)) or any(b < 1 for b in blocks):
            raise ValueError(f"exit blocks must be increasing and positive, not {blocks}")
        if not 0.5 < self.exit_confidence <= 1.0:
            raise ValueError(f"exit_confidence must be in (0.5, 1], not {self.exit_confidence}")

    @property
    def exit_blocks(self) -> tuple[int, ...]:
        return tuple(e.block for e in self.exits)

    @classmethod
    def load(cls, path: Path = BUNDLED_WEIGHTS) -> RouterWeights:
        data = json.loads(path.read_text())
        return cls(
            version=str(data["version"]),
            encoder=str(data["encoder"]),
            coef=tuple(float(x) for x in data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            meta=dict(data.get("meta", {})),
            exits=tuple(
                ExitHead(
                    block=int(e["block"]),
                    coef=tuple(float(x) for x in e["coef"]),
                    intercept=float(e["intercept"]),
                )
                for e in data.get("exits", [])
            ),
            exit_confidence=float(data.get("exit_confidence", 0.95)),
        )

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["coef"] = [round(x, 7) for x in self.coef]
        for exit_data, head in zip(data["exits"], self.exits, strict=True):
            exit_data["coef"] = [round(x, 7) for x in head.coef]
        path.write_text(json.dumps(data, indent=1) + "\n")

    @cached_property
    def _coef_array(self) -> npt.NDArray[np.float64]:
        # Built once: converting 384 floats on every decision costs more than the dot product.
        return np.asarray(self.coef, dtype=np.float64)

    def score(self, embedding: npt.NDArray[np.float32]) -> float:
        return _sigmoid(float(np.dot(self._coef_array, embedding)) + self.intercept)

    def decide(
        self, embedding: npt.NDArray[np.float32], threshold: float | None = None
    ) -> RouteDecision:
        cut = self.threshold if threshold is None else threshold
        score = self.score(embedding)
        return RouteDecision("outline" if score >= cut else "direct", score, cut, self.version)

    def decide_staged(
        self, stages: Iterator[npt.NDArray[np.float32]], threshold: float | None = None
    ) -> RouteDecision:
        """Decide from an encoder's stages (one per exit, then the whole encoder's), read
        only as far as needed: the first exit head at least ``exit_confidence`` sure decides,
        else the final head on the last stage. Without exits this is :meth:`decide`."""
        cut = self.threshold if threshold is None else threshold
        for head in self.exits:
            embedding = next(stages, None)
            if embedding is None:
                break
            score = head.score(embedding)
            if score >= self.exit_confidence or score <= 1.0 - self.exit_confidence:
                route: Route = "outline" if score >= 0.5 else "direct"
                return RouteDecision(route, score, cut, self.version, exit_block=head.block)
        rest = list(stages)
        if len(rest) != 1:
            raise ValueError(
                f"the encoder's stages do not match {self.version}'s exits {self.exit_blocks}"
            )
        return self.decide(rest[0], threshold)


def route_text(messages: Sequence[ChatMessage]) -> str:
    """What the router reads: the last user message (its end, when it is long).

    System prompts and earlier turns are left out on purpose: the router was trained on
    questions, and what decides the answer's shape is what is being asked now.
    """
    for message in reversed(messages):
        if message.role == "user":
            text = message.text().strip()
            return text[-MAX_TEXT_CHARS:]
    return ""
