"""The 2-edge testbed in the simulator: the shared core, the recorded workload, a replayed run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pice_bench.sim.edge import SimSequence
from pice_bench.sim.engine import GivenRequest, Simulation, Workload
from pice_bench.sim.testbed import (
    EDGE2_QUOTA,
    EDGE_SINGLE_RATE,
    PREFILL_RATE,
    RecordedRequest,
    core_shares,
    given_requests,
    hetero_edges,
    hetero_fleet,
    load_records,
    parse_record,
    point_lengths,
    schedule_fingerprint,
)
from pice_gateway.placement.base import EdgeStatus, PointPlacement

HETERO = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "hetero"


def test_busy_processes_share_the_core_up_to_their_quotas() -> None:
    assert core_shares([1.0]) == [1.0]
    assert core_shares([EDGE2_QUOTA]) == [EDGE2_QUOTA]
    assert core_shares([1.0, 1.0]) == [0.5, 0.5]
    # The quota'd edge keeps its 0.33; what it leaves goes to the other.
    assert core_shares([1.0, EDGE2_QUOTA]) == pytest.approx([1.0 - EDGE2_QUOTA, EDGE2_QUOTA])


def test_the_fleet_is_the_profile_edge_2_a_third_as_fast_behind_the_proxy() -> None:
    edge1, edge2 = hetero_fleet()
    assert (edge1.name, edge2.name) == ("edge-1", "edge-2")
    assert edge1.curve.single == pytest.approx(12.8)
    assert edge2.curve.single == pytest.approx(12.8 * 0.33)
    assert edge1.max_sequences == edge2.max_sequences == 16
    assert edge1.link.rtt < 0.001
    assert (edge2.link.rtt, edge2.link.rtt + edge2.link.jitter) == pytest.approx((0.06, 0.10))


def test_an_edge_on_the_shared_core_slows_while_the_other_decodes() -> None:
    edge1, edge2 = hetero_edges(shared=True)
    edge1.advance(0.0)
    edge1.arrive(SimSequence(0, 0, 128))
    assert edge1.per_sequence(1) == pytest.approx(EDGE_SINGLE_RATE)
    alone = edge1.next_finish()
    edge2.advance(1.0)  # advances edge-1 too, at its speed so far
    edge2.arrive(SimSequence(0, 1, 10))
    assert edge1.per_sequence(1) == pytest.approx(EDGE_SINGLE_RATE * (1 - EDGE2_QUOTA))
    assert edge2.per_sequence(1) == pytest.approx(EDGE_SINGLE_RATE * EDGE2_QUOTA)
    later = edge1.next_finish()
    assert alone is not None
    assert later is not None
    assert later > alone
    assert list(edge2.neighbours()) == [edge1]
    # Independent edges do not see each other.
    free1, free2 = hetero_edges(shared=False)
    free2.arrive(SimSequence(0, 1, 10))
    assert free1.per_sequence(1) == pytest.approx(EDGE_SINGLE_RATE)
    assert list(free1.neighbours()) == []


class ByPoint:
    """Point p to edge-(p+1), so a test knows where everything runs."""

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        return f"edge-{point.point + 1}"


def one_request_latency(
    shared: bool, lengths: tuple[int, int], ready: tuple[float, float]
) -> float:
    request = GivenRequest(arrival=0.0, lengths=lengths, ready=ready)
    simulation = Simulation(
        hetero_fleet(),
        Workload(duration=1.0, warmup=0.0),
        ByPoint(),
        given=[request],
        edges=hetero_edges(shared=shared),
    )
    (latency,) = simulation.run("by-point").latencies
    return latency


def test_a_replayed_request_finishes_when_the_shared_core_says() -> None:
    long1, short2 = 128, 21
    fast, slow = EDGE_SINGLE_RATE, EDGE_SINGLE_RATE * (1 - EDGE2_QUOTA)
    edge2_busy = short2 / (EDGE_SINGLE_RATE * EDGE2_QUOTA)  # edge-2 is at its quota throughout
    # Both points named at 1 s: edge-1 runs slow while edge-2 decodes, then fast. edge-2's
    # point reaching it later (the link) moves both phases alike, so edge-1's finish does not
    # depend on it. Loopback's round trip is under half a millisecond.
    done = edge2_busy * slow
    expected = 1.0 + edge2_busy + (long1 - done) / fast
    assert one_request_latency(True, (long1, short2), (1.0, 1.0)) == pytest.approx(
        expected, abs=1e-3
    )
    assert one_request_latency(False, (long1, short2), (1.0, 1.0)) == pytest.approx(
        1.0 + long1 / fast, abs=1e-3
    )
    # edge-2 busy first (its point reaches it at 1.03-1.05 s), edge-1's point at 1.1 s: edge-1
    # starts slow and must speed up when edge-2 is done, before its slow-speed finish.
    edge2_done = 1.04 + edge2_busy
    expected = edge2_done + (long1 - (edge2_done - 1.1) * slow) / fast
    assert expected < 1.1 + long1 / slow
    assert one_request_latency(True, (long1, short2), (1.1, 1.0)) == pytest.approx(
        expected, abs=0.005
    )


def record(scheduled: float, tokens: list[int], prompt: int, **timings: float) -> dict[str, Any]:
    return {
        "phase": "load",
        "scheduled_s": scheduled,
        "answer": {
            "latency_s": 9.5,
            "tokens": {"edge_prompt": prompt},
            "extension": {
                "points": [{"tokens": n, "edge": "edge-1"} for n in tokens],
                "timings": timings,
            },
        },
    }


def test_a_record_gives_arrival_points_and_sketch_timing() -> None:
    parsed = parse_record(
        record(
            30.0,
            [40, 10, 20],
            300,
            total_ms=9400.0,
            expansion_ms=9000.0,
            sketch_ms=2400.0,
        )
    )
    assert parsed == RecordedRequest(30.0, (40, 10, 20), 300, 0.4, 2.4, 9.5)
    assert parsed.ready() == pytest.approx((0.4, 1.4, 2.4))
    assert point_lengths(parsed) == (40, 10, 20)
    # Half of each point's 100 prompt tokens, as decode time at batch 1.
    extra = 0.5 * 100 * EDGE_SINGLE_RATE / PREFILL_RATE
    assert point_lengths(parsed, 0.5) == tuple(round(n + extra) for n in (40, 10, 20))


def test_replay_keeps_each_slot_and_resampling_draws_from_the_records() -> None:
    records = [RecordedRequest(float(i), (i + 1,) * (i + 1), 10, 0.5, 1.0, 5.0) for i in range(5)]
    replay = given_requests(records)
    assert [g.arrival for g in replay] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [g.lengths for g in replay] == [r.tokens for r in records]
    drawn = given_requests(records, resample_seed=3)
    assert drawn == given_requests(records, resample_seed=3)
    assert [g.arrival for g in drawn] == [g.arrival for g in replay]
    assert {g.lengths for g in drawn} <= {r.tokens for r in records}
    assert [g.lengths for g in drawn] != [g.lengths for g in replay]


def test_the_recorded_least_loaded_run_loads() -> None:
    records = load_records(HETERO / "least-loaded")
    assert len(records) == 30
    assert [r.arrival for r in records] == sorted(r.arrival for r in records)
    assert all(0.0 < r.first_point <= r.sketch_done for r in records)
    assert schedule_fingerprint(HETERO / "least-loaded") == schedule_fingerprint(HETERO / "eft")
    assert math.isclose(records[0].arrival, 0.0)
