"""The estimator core: the rate-vs-batch model, its fit, and the expected finish time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from pice.edge_protocol import ExpandEvent, ExpandRequest, LoadResponse
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.estimate import added_delay, expected_finish, finish_on
from pice_gateway.placement.rate import DEFAULT_ALPHA, MIN_FINISHED_POINTS, RateCurve, RateFit
from tests.gateway.fakes import load_report


def status(running: int = 0, queued: int = 0, in_flight: int = 0, rtt: float = 0.0) -> EdgeStatus:
    load = load_report(running_sequences=running, queued_sequences=queued, max_sequences=8)
    return EdgeStatus("e", True, in_flight, load, 0.0, rtt=rtt)


def test_the_default_slope_is_the_edge_benchs_8_sequence_ratio() -> None:
    curve = RateCurve(single=22.4)
    assert curve.aggregate(8) / curve.aggregate(1) == pytest.approx(2.4)
    assert curve.per_sequence(8) < curve.per_sequence(2) < curve.per_sequence(1) == 22.4
    assert RateCurve(10.0, alpha=0.0).aggregate(4) == 40.0
    assert RateCurve(10.0, alpha=1.0).aggregate(4) == 10.0


def test_a_curve_through_one_measurement() -> None:
    curve = RateCurve.through(8, 54.0)
    assert curve.alpha == DEFAULT_ALPHA
    assert curve.aggregate(8) == pytest.approx(54.0)


def test_the_fit_recovers_a_curve_from_reports_at_several_batch_sizes() -> None:
    truth = RateCurve(single=30.0, alpha=0.2)
    fit = RateFit()
    for batch in [1, 2, 4, 8, 3, 6]:
        fit.observe(batch, truth.aggregate(batch))
    curve = fit.curve()
    assert curve is not None
    assert curve.single == pytest.approx(30.0)
    assert curve.alpha == pytest.approx(0.2)


def test_one_batch_size_keeps_the_default_slope_and_idle_reports_say_nothing() -> None:
    fit = RateFit()
    assert fit.curve() is None
    fit.observe(0, 0.0)
    fit.observe(3, 0.0)
    assert fit.curve() is None
    fit.observe(4, 40.0)
    fit.observe(4, 40.0)
    curve = fit.curve()
    assert curve is not None
    assert curve.alpha == DEFAULT_ALPHA
    assert curve.aggregate(4) == pytest.approx(40.0)


def test_the_fit_follows_an_edge_that_slows_down() -> None:
    fit = RateFit()
    for _ in range(20):
        fit.observe(2, RateCurve(40.0).aggregate(2))
    for _ in range(100):
        fit.observe(2, RateCurve(20.0).aggregate(2))
    curve = fit.curve()
    assert curve is not None
    assert curve.single == pytest.approx(20.0, rel=0.01)


def test_finish_time_with_a_free_slot_is_rtt_plus_decoding_in_the_bigger_batch() -> None:
    curve = RateCurve(single=40.0)
    idle = expected_finish(status(), 32.0, curve)
    assert idle == pytest.approx(32.0 / 40.0)
    four = expected_finish(status(running=4, rtt=0.1), 32.0, curve)
    assert four == pytest.approx(0.1 + 32.0 / curve.per_sequence(5))


def test_finish_time_on_a_full_edge_waits_for_the_sequences_ahead() -> None:
    curve = RateCurve(single=40.0)
    # 8 running, 4 queued: 5 sequences must finish before this one starts.
    full = expected_finish(status(running=8, queued=4), 32.0, curve)
    assert full == pytest.approx(5 * 32.0 / curve.aggregate(8) + 32.0 / curve.per_sequence(8))
    # This gateway's newer count wins over an older poll.
    assert expected_finish(status(running=8, in_flight=12), 32.0, curve) == pytest.approx(full)


def test_the_finish_carries_the_inputs_it_was_computed_from() -> None:
    curve = RateCurve(single=40.0, alpha=0.25)
    finish = finish_on(status(running=8, queued=4, rtt=0.05), 32.0, curve, source="prior")
    assert (finish.busy, finish.slots, finish.tokens) == (12, 8, 32.0)
    assert (finish.single_rate, finish.alpha, finish.rtt) == (40.0, 0.25, 0.05)
    assert finish.rate_source == "prior"
    assert finish.wait == pytest.approx(5 * 32.0 / curve.aggregate(8))
    assert finish.decode == pytest.approx(32.0 / curve.per_sequence(8))
    assert finish.seconds == pytest.approx(finish.rtt + finish.wait + finish.decode)
    assert expected_finish(status(running=8, queued=4, rtt=0.05), 32.0, curve) == finish.seconds


def test_a_point_on_an_idle_edge_delays_nobody() -> None:
    curve = RateCurve(single=40.0)
    assert added_delay(status(), 32.0, curve) == 0.0
    # A single-slot edge: whatever is queued waits its turn anyway; nothing decodes beside it.
    single = EdgeStatus("one", True, 3, load_report(max_sequences=1), 0.0)
    assert added_delay(single, 32.0, curve) == 0.0


def test_joining_a_batch_slows_every_sequence_in_it() -> None:
    curve = RateCurve(single=40.0)  # alpha 1/3
    # 4 running: the point decodes 32 tokens at per_sequence(5) = 17.14 tok/s, 1.87 s, and each
    # of the 4 steps at 17.14 instead of per_sequence(4) = 20 tok/s meanwhile: 4 · 1.87 · (1 −
    # 17.14/20) = 4 · 1.87 · α/(1 + 4α) = 1.07 s in all.
    delay = added_delay(status(running=4), 32.0, curve)
    assert delay == pytest.approx(4 * (32.0 / curve.per_sequence(5)) * (1 / 3) / (1 + 4 / 3))
    assert delay == pytest.approx(1.0667, abs=1e-3)
    # Linear in the point's length; larger with more sequences beside it.
    assert added_delay(status(running=4), 64.0, curve) == pytest.approx(2 * delay)
    assert (
        added_delay(status(running=2), 32.0, curve)
        < delay
        < added_delay(status(running=6), 32.0, curve)
    )
    # Perfect batching costs the others nothing; with none (the edge's rate shared) each other
    # sequence waits exactly the point's own work, 32 / 40 = 0.8 s.
    assert added_delay(status(running=4), 32.0, RateCurve(40.0, alpha=0.0)) == 0.0
    assert added_delay(status(running=4), 32.0, RateCurve(40.0, alpha=1.0)) == pytest.approx(
        4 * 0.8
    )


def test_on_a_full_edge_the_point_keeps_the_batch_full_and_its_wait_delays_nobody() -> None:
    curve = RateCurve(single=40.0)
    # 8 slots, 8 running, 4 queued: admitted later, beside 7 others, in a batch of 8.
    full = added_delay(status(running=8, queued=4), 32.0, curve)
    decode = 32.0 / curve.per_sequence(8)
    assert full == pytest.approx(7 * decode * (1 - curve.per_sequence(8) / curve.per_sequence(7)))
    assert full == added_delay(status(running=8), 32.0, curve)
    assert full == added_delay(status(running=7), 32.0, curve)


class TimedEdge:
    """A client whose ``/v1/load`` takes 20 ms and reports 4 sequences at 60 tok/s."""

    name = "timed"

    def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        raise NotImplementedError

    async def load(self) -> LoadResponse:
        await asyncio.sleep(0.02)
        return load_report(running_sequences=4, decode_tokens_per_second=60.0)

    async def aclose(self) -> None:
        pass


async def test_the_poller_measures_the_round_trip_and_fits_the_rate() -> None:
    registry = EdgeRegistry([Edge(TimedEdge())], poll_interval=1.0, point_tokens=40.0)
    assert registry.snapshot()[0].rtt is None
    assert registry.snapshot()[0].rate is None
    await registry.poll_once()
    edge = registry.snapshot()[0]
    assert edge.rtt is not None
    assert 0.015 <= edge.rtt < 0.5
    assert edge.rate is not None
    assert edge.rate.aggregate(4) == pytest.approx(60.0)
    assert registry.expected_point_tokens() == 40.0
    registry.observe_point(60)
    assert 40.0 < registry.expected_point_tokens() < 60.0


def _edge() -> Edge:
    edge = Edge(TimedEdge())
    # A decode-rate fit from one load report: 30 tok/s at a batch of 2.
    edge.record_load(load_report(running_sequences=2, decode_tokens_per_second=30.0), 0.01)
    return edge


def test_finished_points_fit_the_edges_curve_once_enough_have_finished() -> None:
    """Points timed from placement recover the curve they finished at; before
    MIN_FINISHED_POINTS of them, and with ``rate_from="decode"``, the reported rate is used."""
    truth = RateCurve(single=5.0, alpha=0.1)
    edge = _edge()
    for n in range(3 * MIN_FINISHED_POINTS):
        batch = 1 + n % 6
        if n == MIN_FINISHED_POINTS - 1:
            assert edge.status().rate_source == "decode"
        edge.observe_finish(batch, 32, 32.0 / truth.per_sequence(batch))
    status = edge.status()
    assert status.rate_source == "points"
    assert status.rate is not None
    assert status.rate.single == pytest.approx(truth.single, rel=0.01)
    assert status.rate.alpha == pytest.approx(truth.alpha, abs=0.01)
    decode = edge.status("decode")
    assert decode.rate_source == "decode"
    assert decode.rate is not None
    assert decode.rate.single != pytest.approx(truth.single, rel=0.1)


def test_a_short_points_time_has_less_say_than_a_long_ones() -> None:
    """A 2-token point is mostly overhead: weighted by its tokens, it barely moves the fit."""
    edge = _edge()
    for _ in range(MIN_FINISHED_POINTS):
        edge.observe_finish(1, 40, 10.0)  # 4 tok/s
    edge.observe_finish(1, 2, 4.0)  # 0.5 tok/s
    edge.observe_finish(1, 0, 1.0)  # nothing written: no measurement
    rate = edge.status().rate
    assert rate is not None
    assert 3.5 < rate.single < 4.0
