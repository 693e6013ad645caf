"""The router's pure core: a logistic-regression head over a sentence embedding.

The decision is ``sigmoid(w · e + b) >= threshold`` on the L2-normalised embedding ``e`` of the
text the router reads (:func:`route_text`): a dot product, microseconds. The weights, the
threshold tuned on the development set, and where they came from (encoder, data hash, scores)
live in one JSON file that ships with the package (``weights.json``); ``pice router train``
writes it again from the shipped data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
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

    def report(self) -> dict[str, Any]:
        return {
            "decision": self.route,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "version": self.version,
            "ms": round(self.ms, 2),
        }


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
        )

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["coef"] = [round(x, 7) for x in self.coef]
        path.write_text(json.dumps(data, indent=1) + "\n")

    @cached_property
    def _coef_array(self) -> npt.NDArray[np.float64]:
        # Built once: converting 384 floats on every decision costs more than the dot product.
        return np.asarray(self.coef, dtype=np.float64)

    def score(self, embedding: npt.NDArray[np.float32]) -> float:
        z = float(np.dot(self._coef_array, embedding)) + self.intercept
        return 1.0 / (1.0 + math.exp(-z))

    def decide(
        self, embedding: npt.NDArray[np.float32], threshold: float | None = None
    ) -> RouteDecision:
        cut = self.threshold if threshold is None else threshold
        score = self.score(embedding)
        return RouteDecision("outline" if score >= cut else "direct", score, cut, self.version)


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
