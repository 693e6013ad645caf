"""``pice sim``: the simulated edge, the run, and that it drives the gateway's own policies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from pice_bench.sim.edge import SimEdge, SimSequence
from pice_bench.sim.engine import (
    Migration,
    RunResult,
    Simulation,
    Workload,
    rate_for_load,
    workload_requests,
)
from pice_bench.sim.profiles import AGX_ORIN, LAN, ORIN_NANO, ORIN_NX, EdgeProfile, fleet
from pice_bench.sim.sweep import SimConfig, report, run_one, table
from pice_cli.main import main
from pice_gateway.placement import registry
from pice_gateway.placement.base import EdgeStatus, PointPlacement
from pice_gateway.placement.hedging import HedgeRule
from pice_gateway.placement.least_loaded import LeastLoadedPolicy
from pice_gateway.placement.rate import RateCurve, RateFrom
from pice_gateway.placement.round_robin import RoundRobinPolicy
from tests.support.scripts import load_benchmark

SHORT = Workload(duration=120.0, warmup=10.0)


def config(mix: str, seed: int = 0) -> SimConfig:
    return SimConfig(edges=4, mix=mix, workload=SHORT, seed=seed)


def p95s(cfg: SimConfig, load: float = 0.7) -> dict[str, float]:
    return {policy: run_one(cfg, policy, load).p95 for policy in cfg.policies}


def test_a_batch_decodes_at_the_per_sequence_rate_and_the_queue_waits_its_turn() -> None:
    curve = RateCurve(single=10.0, alpha=0.5)
    edge = SimEdge(EdgeProfile("e", "test", curve, max_sequences=2, link=LAN))
    for point, tokens in enumerate([10, 20, 5]):
        edge.arrive(SimSequence(0, point, tokens))
    assert (edge.running, len(edge.queue)) == (2, 1)
    # Two running at 10·2/1.5/2 = 6.67 tok/s each: the first 10 tokens take 1.5 s.
    finish = edge.next_finish()
    assert finish == pytest.approx(1.5)
    edge.advance(finish)
    assert [s.point for s in edge.finish_due()] == [0]
    assert (edge.running, len(edge.queue)) == (2, 0), "the queued sequence took the slot"
    load = edge.load()
    assert load.decode_tokens_per_second == pytest.approx(curve.aggregate(2))
    assert load.decode_batch_mean == pytest.approx(2.0)
    assert load.free_sequence_slots == 0


def test_device_profiles_keep_the_published_ratios() -> None:
    assert ORIN_NANO.curve().aggregate(8) / ORIN_NANO.curve().aggregate(1) == pytest.approx(2.4)
    assert AGX_ORIN.curve().single / ORIN_NANO.curve().single == pytest.approx(204.8 / 68)
    ceiling = AGX_ORIN.curve().single / AGX_ORIN.curve().alpha
    assert ceiling / (ORIN_NANO.curve().single / ORIN_NANO.curve().alpha) == pytest.approx(6.875)
    assert ORIN_NX.max_sequences == 16
    edges = fleet(10, {"orin-nano": 0.5, "agx-orin": 0.5}, seed=3)
    assert sorted(e.device for e in edges) == ["agx-orin"] * 5 + ["orin-nano"] * 5
    assert edges == fleet(10, {"orin-nano": 0.5, "agx-orin": 0.5}, seed=3)


def test_load_is_a_share_of_the_fleets_saturated_throughput() -> None:
    edges = fleet(4, {"orin-nx": 1.0}, seed=0)
    rate = rate_for_load(0.5, edges, SHORT)
    offered = rate * SHORT.mean_points() * SHORT.mean_point_tokens()
    assert offered == pytest.approx(0.5 * 4 * ORIN_NX.curve().aggregate(16))


def test_on_unequal_edges_eft_beats_least_loaded_beats_round_robin() -> None:
    for seed in (0, 1):
        p95 = p95s(config("heterogeneous", seed))
        assert p95["eft"] < p95["least-loaded"] < p95["round-robin"], p95


def test_on_equal_edges_the_policies_are_about_even() -> None:
    p95 = p95s(config("homogeneous"))
    assert max(p95.values()) / min(p95.values()) < 1.15, p95


def test_a_run_is_deterministic_for_a_seed() -> None:
    first = run_one(config("heterogeneous"), "eft", 0.7)
    again = run_one(config("heterogeneous"), "eft", 0.7)
    assert first.latencies == again.latencies
    assert first.latencies != run_one(config("heterogeneous", seed=5), "eft", 0.7).latencies


class Spy(LeastLoadedPolicy):
    seen: ClassVar[list[tuple[PointPlacement, list[EdgeStatus]]]] = []

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        Spy.seen.append((point, list(edges)))
        return super().place(point, edges)


def test_the_simulator_asks_the_gateways_registered_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PLACEMENT_POLICIES", {"spy": Spy})
    Spy.seen.clear()
    cfg = SimConfig(edges=4, policies=("spy",), workload=SHORT)
    result = run_one(cfg, "spy", 0.5)
    assert len(Spy.seen) == result.points > 0
    point, edges = Spy.seen[-1]
    assert point.expected_tokens is not None
    assert point.expected_tokens > 0
    assert [edge.name for edge in edges] == [profile.name for profile in cfg.fleet()]
    for edge in edges:
        assert edge.up
        assert edge.load is not None
        assert edge.rtt is not None
        assert edge.rtt > 0
        assert edge.rate is not None, "the gateway's rate fit saw the edge decode"


@pytest.mark.parametrize("rate_from", ["points", "decode"])
def test_the_simulated_gateway_fits_each_edges_rate_from_the_points_it_saw_finish(
    monkeypatch: pytest.MonkeyPatch, rate_from: RateFrom
) -> None:
    """With ``points`` (the gateway's default) the estimates' curve is fitted to the points'
    own times once enough finished. It is a predictor from what is known at placement, not the
    device's physics: a point's batch grows after it is placed (the sketch's later points
    join), so the fit reads an edge slower than it decodes alone (the sim's Orin Nano at
    50-70% of its r1), never faster; it still tells the fast device from the slow one."""
    monkeypatch.setattr(registry, "PLACEMENT_POLICIES", {"spy": Spy})
    Spy.seen.clear()
    edges = [EdgeProfile(d.name, d.name, d.curve(), 16, LAN) for d in (AGX_ORIN, ORIN_NANO)]
    workload = replace(SHORT, rate=rate_for_load(0.5, edges, SHORT))
    Simulation(edges, workload, Spy(), rate_from=rate_from).run("spy", 0.5)
    _, seen = Spy.seen[-1]
    assert [edge.rate_source for edge in seen] == [rate_from] * 2
    fitted = [edge.rate.single for edge in seen if edge.rate is not None]
    true = [edge.curve.single for edge in edges]
    assert len(fitted) == 2
    for rate, physical in zip(fitted, true, strict=True):
        assert 0.4 * physical < rate < 1.1 * physical
    assert fitted[0] > 2.0 * fitted[1]


def test_pice_sim_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim.json"
    argv = ["sim", "--edges", "4", "--duration", "30", "--warmup", "5", "--loads", "0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| load | policy |")
    assert "| 0.50 | eft |" in printed
    record = json.loads(out.read_text())
    assert [r["policy"] for r in record["results"]] == ["round-robin", "least-loaded", "eft"]
    assert len(record["fleet"]) == 4
    assert main(["sim", "--policies", "fastest"]) == 2


def test_the_table_gives_p95_as_a_ratio_to_eft() -> None:
    cfg = SimConfig(edges=4, workload=SHORT)
    results = [run_one(cfg, policy, 0.5) for policy in ("least-loaded", "eft")]
    assert table(results).splitlines()[-1].endswith("| 1.00 | – |")
    assert report(cfg, results)["config"]["policies"] == list(cfg.policies)


def test_a_cancelled_sequence_leaves_the_queue_or_the_batch_and_frees_its_slot() -> None:
    edge = SimEdge(EdgeProfile("e", "test", RateCurve(single=10.0), max_sequences=1, link=LAN))
    edge.arrive(SimSequence(0, 0, 10))
    edge.arrive(SimSequence(0, 1, 10))
    assert edge.cancel(0, 1), "from the queue"
    assert (edge.running, len(edge.queue)) == (1, 0)
    edge.arrive(SimSequence(0, 2, 10))
    version = edge.version
    assert edge.cancel(0, 0), "from the batch"
    assert edge.version != version, "its pending completion is outdated"
    assert (edge.running, len(edge.queue)) == (1, 0), "the queued one took the slot"
    assert not edge.cancel(0, 0)


def test_hedging_in_the_simulator_loses_no_request_and_some_duplicates_win() -> None:
    # A tight deadline so that hedges happen at all on a short run.
    # Round-robin puts points on slow edges, so some duplicates on faster ones win.
    cfg = SimConfig(edges=6, workload=SHORT, hedge_factor=1.0, hedge_floor=0.0)
    plain, hedged = run_one(cfg, "round-robin", 0.5), run_one(cfg, "round-robin+hedge", 0.5)
    assert len(hedged.latencies) == len(plain.latencies), "every measured request finished"
    assert hedged.points == plain.points
    assert 0 < hedged.hedges_won < hedged.hedges
    assert plain.hedges == 0
    assert hedged.summary()["hedges"] == hedged.hedges


def test_pice_sim_takes_hedged_policies_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "--edges", "4", "--duration", "30", "--warmup", "5", "--loads", "0.5"]
    assert main([*argv, "--policies", "eft,eft+hedge", "--hedge-floor", "0.5"]) == 0
    assert "| 0.50 | eft+hedge |" in capsys.readouterr().out
    assert main(["sim", "--policies", "fastest+hedge"]) == 2


def test_a_sequence_reports_the_tokens_it_has_left() -> None:
    edge = SimEdge(EdgeProfile("e", "test", RateCurve(single=10.0), max_sequences=1, link=LAN))
    edge.arrive(SimSequence(0, 0, 30))
    edge.arrive(SimSequence(0, 1, 30))
    edge.advance(1.0)
    assert edge.remaining(0, 0) == pytest.approx(20.0)
    assert edge.remaining(0, 1) is None, "queued: nothing decoded yet"
    assert edge.remaining(5, 5) is None


def test_a_migrated_point_moves_and_is_not_decoded_twice() -> None:
    """Migration (a what-if): a late point's attempt stops and another edge decodes only what
    it had left, so every move finishes on its new edge and the fleet decodes each point's
    tokens once (up to one token a move, rounded up), where duplicates decode them again."""
    cfg = SimConfig(edges=6, workload=SHORT)
    fleet_ = cfg.fleet()
    workload = replace(SHORT, rate=rate_for_load(0.5, fleet_, SHORT))
    total = sum(sum(r.lengths) for r in workload_requests(workload, cfg.seed))
    tight = HedgeRule(enabled=True, factor=1.0, floor_seconds=0.0)

    def decoded(migration: Migration | None) -> tuple[RunResult, float]:
        edges = [SimEdge(p) for p in fleet_]
        sim = Simulation(
            fleet_, workload, RoundRobinPolicy(), hedging=tight, migration=migration, edges=edges
        )
        return sim.run("round-robin", 0.5), sum(e.tokens_generated for e in edges)

    hedged, hedged_tokens = decoded(None)
    moved, moved_tokens = decoded(Migration())
    assert len(moved.latencies) == len(hedged.latencies), "every measured request finished"
    assert moved.hedges > 0
    assert moved.hedges_won == moved.hedges, "a moved point can only finish where it went"
    assert moved_tokens <= total + moved.hedges
    assert hedged_tokens > total, "duplicates decode some points twice"
    _, prefilled_tokens = decoded(Migration(prefill_tokens=20))
    assert prefilled_tokens > moved_tokens, "each move pays its prefill"


def test_the_migration_benchmark_prints_its_table_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_benchmark("sim_migration")
    out = tmp_path / "migration.json"
    argv = ["sim_migration.py", "--seeds", "0", "--duration", "8", "--warmup", "2"]
    monkeypatch.setattr("sys.argv", [*argv, "--deadlines", "1:0", "--out", str(out)])
    assert script.main() == 0
    table = capsys.readouterr().out
    assert "| eft + migration (1× + 0 s) |" in table
    record = json.loads(out.read_text())
    moved = record["variants"]["eft + migration (1× + 0 s)"]["runs"][0]
    assert moved["moved_or_hedged"] == moved["won"] > 0, "every move finishes where it went"
    assert record["variants"]["eft"]["runs"][0]["moved_or_hedged"] == 0
