"""What tracing costs the gateway: CPU time per request with tracing off and on.

The gateway runs against the test suite's fake cloud and fake edge (``tests/gateway``, edge
tokens without delay), all in this process under uvicorn threads, and answers N sequential
requests per model and mode. Per request it records wall time and this process's CPU time
(every thread: gateway, fakes and client alike); the fakes and the client do the same work in
both modes, so the CPU difference is what tracing costs. "on" is the OpenTelemetry SDK with a
batch span processor into an in-memory exporter (the export over the network is left out).
Modes alternate over ``--rounds`` rounds and each figure is the median over rounds, so a
drift in the machine's load hits both modes alike. Prints a table and writes JSON.

Run from the repository root (it imports the fakes from ``tests/``):

python benchmarks/tracing_overhead.py --requests 200 --rounds 3 \
    --out benchmarks/results/tracing_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pice.otel import OtelTracing
from pice.tracing import NO_TRACING, Tracing
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.gateway.test_protocol import ask

MODELS = ("pice-cloud", "pice-progressive")
MODES = ("off", "on")
WARM_UP = 30


def tracing_for(mode: str) -> Tracing:
    if mode == "off":
        return NO_TRACING
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    return OtelTracing(provider)


def measure(mode: str, model: str, requests: int) -> dict[str, Any]:
    tracing = tracing_for(mode)
    edge = EdgeScript("e1", token_delay=0.0)
    walls: list[float] = []
    cpus: list[float] = []
    with (
        fake_stack(CloudScript(), [edge], report_observers=(), tracing=tracing) as url,
        httpx.Client(timeout=30) as client,
    ):
        for i in range(WARM_UP + requests):
            wall, cpu = time.perf_counter(), time.process_time()
            response = client.post(url + "/chat/completions", json=ask(model=model))
            response.raise_for_status()
            if i >= WARM_UP:
                walls.append((time.perf_counter() - wall) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
    tracing.shutdown()
    return {
        "mode": mode,
        "model": model,
        "requests": requests,
        "wall_p50_ms": round(statistics.median(walls), 3),
        "cpu_mean_ms": round(statistics.fmean(cpus), 3),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode and model over its rounds: the median of each figure."""
    first = runs[0]
    return {
        "mode": first["mode"],
        "model": first["model"],
        "requests": sum(run["requests"] for run in runs),
        "rounds": len(runs),
        "wall_p50_ms": round(statistics.median(run["wall_p50_ms"] for run in runs), 3),
        "cpu_mean_ms": round(statistics.median(run["cpu_mean_ms"] for run in runs), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per mode, model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = [
        measure(mode, model, args.requests)
        for _ in range(args.rounds)
        for model in MODELS
        for mode in MODES
    ]
    rows = [
        summary([r for r in runs if (r["model"], r["mode"]) == (model, mode)])
        for model in MODELS
        for mode in MODES
    ]
    print(f"{'model':18} {'tracing':8} {'wall p50 ms':>12} {'CPU ms/request':>15}")
    for row in rows:
        wall, cpu = row["wall_p50_ms"], row["cpu_mean_ms"]
        print(f"{row['model']:18} {row['mode']:8} {wall:12.2f} {cpu:15.3f}")
    for model in MODELS:
        off, on = (next(r for r in rows if (r["model"], r["mode"]) == (model, m)) for m in MODES)
        added = on["cpu_mean_ms"] - off["cpu_mean_ms"]
        print(f"{model}: tracing on adds {added:+.3f} ms CPU per request")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
