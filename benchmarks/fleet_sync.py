"""Membership over Redis: what a replica's sync costs, and how late a join reaches a replica.

Starts its own ``redis-server`` (Debian's package) on a free loopback port, then, with the
gateway's own ``Fleet`` and ``RedisStore`` (stub edge clients, no HTTP to edges):

- ``sync``: wall time of one ``Fleet.sync_once`` (read members, reconcile, publish this
  replica's counts, read the others') with M registered edges and R other replicas publishing;
- ``join``: an edge registers on replica A while replica B runs its sync loop
  (``fleet.sync_seconds``); the time until B's registry has it (bounded by the interval plus
  one sync; the replica that took the registration has it at once).

    python benchmarks/fleet_sync.py --out benchmarks/results/fleet_sync.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from pice.edge_protocol import (
    EdgeCapabilities,
    EdgeRegistration,
    ExpandEvent,
    ExpandRequest,
    LoadResponse,
)
from pice_gateway.edges import EdgeRegistry
from pice_gateway.membership.fleet import Fleet
from pice_gateway.membership.redis_store import RedisStore
from pice_gateway.settings import FleetSettings

LOAD = LoadResponse.model_validate(
    {
        "model": "stub", "ready": True, "running_sequences": 0, "queued_sequences": 0,
        "queued_jobs": 0, "max_sequences": 16, "free_sequence_slots": 16,
        "kv_cells_total": 4096, "kv_cells_reserved": 0, "kv_usage": 0.0,
        "decode_tokens_per_second": 0.0, "threads": 1, "tokens_generated": 0,
        "prefill_tokens": 0, "jobs": 0, "cancellations": 0, "prefix_cache_entries": 0,
        "prefix_cache_cells": 0, "prefix_cache_hits": 0, "prefix_cache_reused_tokens": 0,
    }
)  # fmt: skip


class StubEdge:
    """An edge client that answers its load poll at once (the benchmark measures the store)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def load(self) -> LoadResponse:
        return LOAD

    async def aclose(self) -> None:
        return None


def member(name: str) -> EdgeRegistration:
    capabilities = EdgeCapabilities(model="stub", max_sequences=16)
    return EdgeRegistration(
        name=name, url=f"http://10.0.0.1:{8000 + len(name)}", capabilities=capabilities
    )


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", directory]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def fleet(url: str, settings: FleetSettings, replica: str, prefix: str) -> Fleet:
    registry = EdgeRegistry([], poll_interval=1.0)
    return Fleet(
        registry,
        RedisStore.from_url(url, prefix),
        settings,
        lambda m: StubEdge(m.name),
        replica=replica,
    )


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def sync_cost(url: str, members: int, others: int, rounds: int) -> dict[str, Any]:
    prefix = f"bench-sync-{members}-{others}:"
    settings = FleetSettings()
    me = fleet(url, settings, "me", prefix)
    for n in range(members):
        await me.register(member(f"edge-{n}"))
    peers = [fleet(url, settings, f"peer-{n}", prefix) for n in range(others)]
    for peer in peers:
        await peer.sync_once()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await me.sync_once()
        samples.append(time.perf_counter() - started)
    for f in [me, *peers]:
        await f.aclose()
    return {"members": members, "other_replicas": others, **summary(samples)}


async def join_latency(url: str, trials: int, sync_seconds: float) -> dict[str, Any]:
    settings = FleetSettings(sync_seconds=sync_seconds, replica_ttl_seconds=sync_seconds * 6)
    a = fleet(url, settings, "a", "bench-join:")
    b_registry = EdgeRegistry([], poll_interval=1.0)
    b = Fleet(
        b_registry,
        RedisStore.from_url(url, "bench-join:"),
        settings,
        lambda m: StubEdge(m.name),
        replica="b",
    )
    loop = asyncio.create_task(b.run())
    samples = []
    try:
        for n in range(trials):
            name = f"join-{n}"
            started = time.perf_counter()
            await a.register(member(name))
            # The registry has no event to await; a 1 ms poll bounds the error.
            while name not in b_registry:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            samples.append(time.perf_counter() - started)
            # Trials start at varied points of B's interval.
            await asyncio.sleep(sync_seconds * ((n * 7) % 10) / 10)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await a.aclose()
        await b.aclose()
    return {"sync_seconds": sync_seconds, **summary(samples)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with redis_server() as url:
        sync = [
            await sync_cost(url, members, others, args.rounds)
            for members, others in ((3, 1), (50, 1), (50, 8), (500, 8))
        ]
        join = await join_latency(url, args.trials, args.sync_seconds)
    return {"sync": sync, "join": join}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="syncs timed per case")
    parser.add_argument("--trials", type=int, default=20, help="joins timed")
    parser.add_argument("--sync-seconds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print("one sync (Fleet.sync_once over Redis on loopback)")
    print(f"{'members':>8} {'replicas':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for row in result["sync"]:
        replicas = row["other_replicas"] + 1
        times = f"{row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}"
        print(f"{row['members']:>8} {replicas:>9} {times}")
    join = result["join"]
    print(f"\njoin on A seen by B (sync every {join['sync_seconds']} s, {join['n']} joins): "
          f"p50 {join['p50_ms']} ms, max {join['max_ms']} ms")  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
