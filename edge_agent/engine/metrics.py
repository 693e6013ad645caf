"""Prometheus metrics of the engine, read from its load snapshot at scrape time.

A custom collector on a registry the app owns (no global registry): the hot decode loop never
touches a metric object, and two apps in one process (tests) do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.engine.stats import LoadSnapshot


class EngineCollector(Collector):
    def __init__(self, snapshot: Callable[[], LoadSnapshot], model: str) -> None:
        self._snapshot = snapshot
        self._model = model

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        labels = ["model"]
        values = [self._model]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"pice_edge_{name}", doc, labels=labels)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(f"pice_edge_{name}", doc, labels=labels)
            c.add_metric(values, value)
            return c

        yield gauge("ready", "1 once the model is loaded", 1.0 if s.ready else 0.0)
        yield gauge("running_sequences", "Sequences in the decode batch", s.running_sequences)
        yield gauge("queued_sequences", "Sequences of jobs waiting for room", s.queued_sequences)
        yield gauge("queued_jobs", "Jobs waiting for room", s.queued_jobs)
        yield gauge("free_sequence_slots", "Sequence ids free for new jobs", s.free_sequence_slots)
        yield gauge("max_sequences", "Sequences the engine can run at once", s.max_sequences)
        yield gauge("kv_cells_total", "KV cache cells (context size)", s.kv_cells_total)
        yield gauge("kv_cells_reserved", "KV cells reserved by admitted jobs", s.kv_cells_reserved)
        yield gauge(
            "decode_tokens_per_second",
            "Generated tokens per second of decoding over the last 10 s",
            s.decode_tokens_per_second,
        )
        yield counter("tokens_generated", "Tokens generated", s.tokens_generated)
        yield counter("prefill_tokens", "Prompt positions prefilled", s.prefill_tokens)
        yield counter("jobs", "Jobs admitted", s.jobs)
        yield counter("cancellations", "Sequences cancelled", s.cancellations)
        yield gauge(
            "prefix_cache_entries", "Prompt prefixes kept for reuse", s.prefix_cache_entries
        )
        yield gauge("prefix_cache_cells", "KV cells held by cached prefixes", s.prefix_cache_cells)
        yield counter("prefix_cache_hits", "Jobs that reused a cached prefix", s.prefix_cache_hits)
        yield counter(
            "prefix_cache_reused_tokens",
            "Prompt positions taken from the prefix cache instead of prefilled",
            s.prefix_cache_reused_tokens,
        )


def engine_registry(snapshot: Callable[[], LoadSnapshot], model: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(snapshot, model))
    return registry
