"""Engine counters, decode throughput, and the load snapshot other threads read."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 10.0


@dataclass
class EngineCounters:
    """Monotonic totals since start-up (written by the engine thread only)."""

    tokens_generated: int = 0
    prefill_tokens: int = 0  # prompt positions computed; a shared prefix counts once
    jobs: int = 0
    cancellations: int = 0
    decode_steps: int = 0


class ThroughputWindow:
    """Generated tokens per second of decoding over the last ``WINDOW_SECONDS``.

    The rate is tokens over the time spent in decode steps, so it measures what the engine
    does while busy; it falls to 0 once nothing was decoded for a whole window.
    """

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._steps: deque[tuple[float, float, int]] = deque()  # (start, end, tokens)

    def record(self, start: float, end: float, tokens: int) -> None:
        self._steps.append((start, end, tokens))
        self._trim(end)

    def rate(self, now: float) -> float:
        self._trim(now)
        busy = sum(end - start for start, end, _ in self._steps)
        tokens = sum(n for _, _, n in self._steps)
        return tokens / busy if busy > 0 else 0.0

    def batch_mean(self, now: float) -> float | None:
        """The mean batch of the same steps, weighted by their time: a step samples one token
        per sequence, so its tokens are its batch. The batch :meth:`rate` was measured at, which
        the gateway's rate-vs-batch fit pairs it with; ``None`` when the window is empty."""
        self._trim(now)
        busy = sum(end - start for start, end, _ in self._steps)
        weighted = sum((end - start) * n for start, end, n in self._steps)
        return weighted / busy if busy > 0 else None

    def _trim(self, now: float) -> None:
        while self._steps and self._steps[0][1] < now - self._window:
            self._steps.popleft()


@dataclass(frozen=True)
class LoadSnapshot:
    """The engine's load at one moment; published by the engine thread, read by anyone."""

    ready: bool
    running_sequences: int
    queued_sequences: int
    queued_jobs: int
    max_sequences: int
    free_sequence_slots: int
    kv_cells_total: int
    kv_cells_reserved: int
    decode_tokens_per_second: float
    threads: int
    tokens_generated: int
    prefill_tokens: int
    jobs: int
    cancellations: int
    prefix_cache_entries: int
    prefix_cache_cells: int
    prefix_cache_hits: int
    prefix_cache_reused_tokens: int  # prompt positions taken from the cache, not prefilled
    # The mean batch of the decode steps ``decode_tokens_per_second`` covers.
    decode_batch_mean: float | None = None

    @property
    def kv_usage(self) -> float:
        return self.kv_cells_reserved / self.kv_cells_total if self.kv_cells_total else 0.0
