"""An edge's decode rate vs its batch size: the model, its default and its running fit.

Rate vs batch size. An edge decodes its running sequences as one batch; a step of b sequences
costs more than a step of one, so the aggregate rate grows with b but saturates, and each
sequence gets slower. The model is

    aggregate(b) = r1 · b / (1 + α·(b − 1))        per_sequence(b) = aggregate(b) / b

with r1 the rate of one sequence alone and α in [0, 1]: α = 0 is perfect batching (b times
the tokens), α = 1 none (the aggregate stays r1). It tends to r1/α, a memory-bandwidth or
compute ceiling. The default α = 1/3 is this repo's edge bench (docs/benchmarks-edge.md): bare
``llama_decode``, 8 sequences vs 1, 2.41× the aggregate (8 / (1 + 7α) = 2.41 gives α = 0.33);
8 concurrent chats measured 2.35×. The expansion rows (4.2× at 8, 4.6× at 16) are not used:
one-at-a-time pays the shared prefix once per point there, so they measure prefill sharing as
much as decoding.

Fitting. An edge reports ``decode_tokens_per_second`` (its aggregate over the last 10 s of
decoding) and ``decode_batch_mean`` (the mean batch over the same steps) in every
``/v1/load``; an older agent sends no batch mean, and its instantaneous ``running_sequences``
stands in (a worse pairing: in the simulator it biased r1 and α upwards by 1.2–2.7×).
:class:`RateFit` keeps those pairs, decayed, and fits the model by least squares on its linear
form ``b / aggregate = (1 − α)/r1 + (α/r1)·b``; while it has seen one batch size only it keeps
the default α and solves for r1.

Fitting from finished points (``progressive.placement_rate: points``, the default). The decode
rate an edge reports leaves out what else a point waits for there — its prompt's prefill, the
dispatcher's lane, other sequences' prefill stalling the batch, the siblings a request's
sketch adds after it — and its pairing with a batch mean is noisy: on the AVX2 testbed the
fitted r1 of one edge swung 2.8–9.9 tok/s within a run, and the estimate grew with the busy
count about twice as fast as the points' times did (docs/benchmarks.md, "Scheduling"). So the
gateway also fits the same curve to its own outcomes: a point placed alone (one candidate) on
a free slot, ``b`` sequences there counting it, that decoded ``n`` tokens in ``t`` seconds from
placement (the round trip taken out) is one measurement of ``per_sequence(b) = n / t``, i.e.
``aggregate(b) = b·n/t``, weighted by ``n`` (a short point's time is mostly overhead). Once
:data:`MIN_FINISHED_POINTS` have finished on an edge, its estimate uses this curve; before, the
reported decode rate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pice.edge_protocol import LoadResponse

DEFAULT_ALPHA = 1.0 / 3.0
# A sequence alone on this repo's 2-core CPU edge (raw decode, Q8_0 0.5B): 22.4 tok/s. Used for
# an edge not measured yet when no other edge is either.
DEFAULT_SINGLE_RATE = 20.0
# Finished points an edge's outcome fit needs before the estimate uses it.
MIN_FINISHED_POINTS = 8

# Where an estimate's rate curve came from: the edge's finished points, its reported decode
# rate, or (neither yet) the fleet's prior.
RateSource = Literal["points", "decode", "prior"]
# Which curve the estimates use (``progressive.placement_rate``): the points fit once it has
# enough finished points, or the decode-rate fit only.
RateFrom = Literal["points", "decode"]


@dataclass(frozen=True)
class RateCurve:
    """An edge's decode rate as a function of its batch size (see the module doc)."""

    single: float  # r1: tokens/s of one sequence decoding alone
    alpha: float = DEFAULT_ALPHA

    def aggregate(self, batch: int) -> float:
        b = max(1, batch)
        return self.single * b / (1.0 + self.alpha * (b - 1))

    def per_sequence(self, batch: int) -> float:
        return self.aggregate(batch) / max(1, batch)

    @classmethod
    def through(cls, batch: int, aggregate: float, alpha: float = DEFAULT_ALPHA) -> RateCurve:
        """The curve of slope ``alpha`` that passes through one measurement."""
        b = max(1, batch)
        return cls(single=aggregate * (1.0 + alpha * (b - 1)) / b, alpha=alpha)


class RateFit:
    """A running least-squares fit of :class:`RateCurve` to ``(batch, aggregate)`` reports.

    Each report weighs ``decay`` times the one before it, so the fit follows an edge whose speed
    drifts (thermal throttling, other work on the device). Reports of an idle edge (no running
    sequence or a zero rate) carry no information and are skipped.
    """

    def __init__(self, *, alpha: float = DEFAULT_ALPHA, decay: float = 0.95) -> None:
        self._prior_alpha = alpha
        self._decay = decay
        self._w = self._x = self._y = self._xx = self._xy = 0.0

    def observe(self, batch: float, aggregate: float, weight: float = 1.0) -> None:
        """One measurement: ``aggregate`` tokens/s at a batch of ``batch``; ``weight`` scales its
        say in the fit (a report counts 1; older ones fade by ``decay`` per observation)."""
        if batch < 1.0 or aggregate <= 0.0 or weight <= 0.0:
            return
        x, y = float(batch), batch / aggregate
        d = self._decay
        self._w = self._w * d + weight
        self._x = self._x * d + weight * x
        self._y = self._y * d + weight * y
        self._xx = self._xx * d + weight * x * x
        self._xy = self._xy * d + weight * x * y

    def observe_load(self, load: LoadResponse) -> None:
        """Take the rate an edge's load report carries, at the batch it was measured at."""
        batch = load.decode_batch_mean
        self.observe(
            load.running_sequences if batch is None else batch, load.decode_tokens_per_second
        )

    def curve(self) -> RateCurve | None:
        """The fitted curve; ``None`` before the first report with decoding in it."""
        if self._w == 0.0:
            return None
        mean_x, mean_y = self._x / self._w, self._y / self._w
        var_x = self._xx / self._w - mean_x * mean_x
        if var_x > 0.25:  # at least two batch sizes, seen often enough to tell apart
            slope = (self._xy / self._w - mean_x * mean_y) / var_x
            intercept = mean_y - slope * mean_x
            inverse_r1 = intercept + slope
            if inverse_r1 > 0.0 and 0.0 <= slope / inverse_r1 <= 1.0:
                return RateCurve(single=1.0 / inverse_r1, alpha=slope / inverse_r1)
        # One batch size, or noise the model cannot take: keep the prior's slope.
        alpha = self._prior_alpha
        return RateCurve(single=(1.0 + alpha * (mean_x - 1.0)) / mean_y, alpha=alpha)


def ewma(previous: float | None, sample: float, weight: float = 0.3) -> float:
    """An exponentially weighted mean; the first sample stands alone."""
    return sample if previous is None else previous + weight * (sample - previous)
