"""The real 2-edge testbed as a simulator fleet and workload (issue #12, item 9).

The fleet is ``configs/testbed/heterogeneous.yaml`` as ``pice bench --profile heterogeneous``
runs it on the 2-core machine: two edge agents, Qwen2.5-Coder-0.5B Q8_0, one thread each,
16 sequences each (the agent's default; the profile does not size them), both on core 1.

- **Rates** from the edge benchmarks, not from the run being checked. One sequence of bare
  ``llama_decode`` with Q8_0 decodes 22.4 tok/s on 2 threads (docs/benchmarks-edge.md); one
  thread does 16 / 28 of two on this machine (shared/ENVIRONMENT.md, the bundled 0.5B, one
  sequence), so r1 = 12.8 tok/s. The batch slope stays α = 1/3: one thread's 8 sequences
  make 38 / 16 = 2.4× one there, what α = 1/3 gives (8 / (1 + 7/3)).
- **edge-2** runs under a 0.33-core CPU quota, so at a third of edge-1's rates.
- **The shared core.** Both real edges run on core 1. :class:`SharedCore` models it: each
  edge with running sequences gets a share of the core (equal shares, capped by a CPU quota,
  what one quota leaves going to the others), and decodes at its rate on the whole core times
  that share. So edge-1 decodes at its full rate while edge-2 is idle and at 0.67 of it while
  edge-2 decodes; edge-2 always at 0.33 (its quota is below an equal half). Decode is
  CPU-bound on one thread, so speed follows CPU time. ``hetero_edges(shared=False)`` gives the
  simulator's usual independent edges instead (edge-1 always at its full rate).
- **Links**: edge-1 on loopback; edge-2 behind the link proxy's 40 ± 10 ms each way (uniform),
  a round trip of 60–100 ms. The 20 Mbit/s rate is left out: a point's request and its SSE
  events are a few kB, under 2 ms at that rate.
- **Prefill** is not simulated by :mod:`.edge`; ``prefill_share`` folds it in as extra tokens
  of each point: a share s of the point's prompt (P tokens, the request's edge prompt tokens
  over its points) decoded as ``s · P · r1 / PREFILL_RATE`` more tokens (the time the edge
  would spend prefilling it alone, at batch 1). Q8_0 prefills 143 tok/s on two threads
  (docs/benchmarks-edge.md, kernel formats); prefill is compute-bound, so one thread is taken
  as half: 71.5 tok/s. s = 1 is every prompt prefilled in full; the agent's prefix cache
  reuses the system prompt across jobs and a request's question and outline across its points
  on one edge, so the real share is well below 1. s is the one parameter
  ``benchmarks/sim_vs_testbed.py`` fits, on the least-loaded run only. Prefill also stalls the
  batch beside it, which tokens of the point itself do not.

The workload is a recorded ``pice bench`` run replayed (:func:`recorded_requests`): each
load-phase request's arrival (its slot in the seeded schedule), its points' completion tokens
and prompt tokens, and its sketch timing (the first point named at ``total_ms −
expansion_ms``, the sketch over at ``sketch_ms``; the points between spaced evenly).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pice_bench.sim.edge import SimEdge
from pice_bench.sim.engine import GivenRequest
from pice_bench.sim.profiles import CPU_ALPHA, CPU_SINGLE_RATE, EdgeProfile, Link
from pice_gateway.placement.rate import RateCurve

# One thread of this machine decodes 16 / 28 of what two do (shared/ENVIRONMENT.md).
ONE_THREAD_SHARE = 16.0 / 28.0
EDGE_SINGLE_RATE = CPU_SINGLE_RATE * ONE_THREAD_SHARE  # 12.8 tok/s
EDGE2_QUOTA = 0.33  # configs/testbed/heterogeneous.yaml: cpu_quota
PREFILL_RATE = 143.0 * 0.5  # tok/s, Q8_0 on one thread (half of two threads' 143)
SLOTS = 16  # the edge agent's default max_sequences

LOOPBACK = Link("loopback", 0.0002, 0.0002)
# 40 ± 10 ms each way: a round trip of 60 to 100 ms.
PROXY_LINK = Link("proxy-40ms", 0.060, 0.040)


# configs/testbed/heterogeneous.yaml: edge-1 without a quota on loopback, edge-2 at 0.33
# cores behind the proxy.
EDGES = (("edge-1", 1.0, LOOPBACK), ("edge-2", EDGE2_QUOTA, PROXY_LINK))


def whole_core_curve() -> RateCurve:
    return RateCurve(single=EDGE_SINGLE_RATE, alpha=CPU_ALPHA)


def hetero_fleet() -> list[EdgeProfile]:
    """The two edges, each with its speed alone on the core (edge-2: its quota of it)."""
    full = whole_core_curve()
    return [
        EdgeProfile(
            name,
            f"cpu-1-thread-quota-{quota:g}",
            RateCurve(single=full.single * quota, alpha=full.alpha),
            SLOTS,
            link,
        )
        for name, quota, link in EDGES
    ]


def core_shares(quotas: Sequence[float]) -> list[float]:
    """The share of one core each busy process gets, given each one's CPU quota: equal shares,
    a process capped by its quota leaving the rest to the others (the kernel's fair scheduler
    with a CFS quota, as ``pice_stack.cgroup`` sets it)."""
    shares = [0.0] * len(quotas)
    left = 1.0
    order = sorted(range(len(quotas)), key=lambda i: quotas[i])
    for n, i in enumerate(order):
        shares[i] = min(quotas[i], left / (len(order) - n))
        left -= shares[i]
    return shares


class SharedCore:
    """The edges on one core; each one's speed depends on which of the others are decoding."""

    def __init__(self) -> None:
        self.edges: list[SharedCoreEdge] = []

    def share(self, edge: SharedCoreEdge) -> float:
        busy = [e for e in self.edges if e is edge or e.running]
        return core_shares([e.quota for e in busy])[busy.index(edge)]

    def advance(self, now: float) -> None:
        # Everyone decodes up to ``now`` at the speeds of the batches they had until now, before
        # any of them changes its batch.
        for edge in self.edges:
            SimEdge.advance(edge, now)


class SharedCoreEdge(SimEdge):
    """An edge whose profile's curve is its speed with the whole core, on a :class:`SharedCore`
    with the other edges there, under a CPU ``quota`` (1.0: none)."""

    def __init__(self, profile: EdgeProfile, core: SharedCore, quota: float = 1.0) -> None:
        super().__init__(profile)
        self.quota = quota
        self.core = core
        core.edges.append(self)

    def per_sequence(self, batch: int) -> float:
        return self.profile.curve.per_sequence(batch) * self.core.share(self)

    def advance(self, now: float) -> None:
        self.core.advance(now)

    def neighbours(self) -> Sequence[SimEdge]:
        return [edge for edge in self.core.edges if edge is not self]


def hetero_edges(*, shared: bool) -> list[SimEdge]:
    """The simulated edges of :func:`hetero_fleet`, on one core (``shared``) or independent
    (each always at its speed alone)."""
    fleet = hetero_fleet()
    if not shared:
        return [SimEdge(profile) for profile in fleet]
    core = SharedCore()
    full = whole_core_curve()
    return [
        SharedCoreEdge(replace(profile, curve=full), core, quota)
        for profile, (_, quota, _) in zip(fleet, EDGES, strict=True)
    ]


@dataclass(frozen=True)
class RecordedRequest:
    """One load-phase request of a ``pice bench`` record, as the simulator needs it."""

    arrival: float  # seconds into the schedule
    tokens: tuple[int, ...]  # completion tokens per point
    prompt_tokens: int  # the edges' prompt tokens of the whole request
    first_point: float  # seconds after arrival the sketch named the first point
    sketch_done: float  # seconds after arrival the sketch ended
    latency: float  # measured, seconds

    def ready(self) -> tuple[float, ...]:
        """When each point was named: the first and the sketch's end known, the rest between."""
        k = len(self.tokens)
        if k == 1:
            return (self.first_point,)
        step = max(0.0, self.sketch_done - self.first_point) / (k - 1)
        return tuple(self.first_point + p * step for p in range(k))


def parse_record(request: dict[str, Any]) -> RecordedRequest:
    """A load-phase request of ``results.json``."""
    answer = request["answer"]
    extension = answer["extension"]
    timings = extension["timings"]
    first = (timings["total_ms"] - timings["expansion_ms"]) / 1000.0
    return RecordedRequest(
        arrival=float(request["scheduled_s"]),
        tokens=tuple(int(point["tokens"]) for point in extension["points"]),
        prompt_tokens=int(answer["tokens"]["edge_prompt"]),
        first_point=first,
        sketch_done=max(first, timings["sketch_ms"] / 1000.0),
        latency=float(answer["latency_s"]),
    )


def load_records(run_dir: Path) -> list[RecordedRequest]:
    """The load-phase requests of one ``pice bench`` run, in schedule order."""
    data = json.loads((run_dir / "results.json").read_text())
    load = [r for r in data["requests"] if r["phase"] == "load"]
    return [parse_record(r) for r in sorted(load, key=lambda r: float(r["scheduled_s"]))]


def schedule_fingerprint(run_dir: Path) -> str:
    data = json.loads((run_dir / "results.json").read_text())
    return ",".join(sorted(s["fingerprint"] for s in data["config"]["load_schedules"].values()))


def point_lengths(record: RecordedRequest, prefill_share: float = 0.0) -> tuple[int, ...]:
    """The tokens each point decodes in the simulator: its completion tokens, plus
    ``prefill_share`` of its prompt as decode-equivalent tokens (see the module doc)."""
    if prefill_share <= 0.0:
        return record.tokens
    prompt = record.prompt_tokens / len(record.tokens)
    extra = prefill_share * prompt * EDGE_SINGLE_RATE / PREFILL_RATE
    return tuple(max(1, round(tokens + extra)) for tokens in record.tokens)


def given_requests(
    records: Sequence[RecordedRequest],
    *,
    prefill_share: float = 0.0,
    resample_seed: int | None = None,
) -> list[GivenRequest]:
    """The simulator's requests: each record's arrival, with its own points and sketch timing
    (a replay), or with ``resample_seed`` those of a record drawn at random (with replacement)
    from all of them, so that seeds vary which questions meet in a burst."""
    rng = random.Random(resample_seed) if resample_seed is not None else None
    out = []
    for record in records:
        source = rng.choice(records) if rng is not None else record
        out.append(
            GivenRequest(
                arrival=record.arrival,
                lengths=point_lengths(source, prefill_share),
                ready=source.ready(),
            )
        )
    return out
