"""One simulated edge: a FIFO queue and continuous batching at the profile's rate vs batch size.

Every running sequence decodes at ``per_sequence(b)`` tokens/s, b the sequences running, as in
the real batcher (one decode step serves the whole batch). That is processor sharing, kept
exact with a virtual clock: ``progress`` counts the tokens each running sequence has decoded
since the edge started; a sequence admitted at progress p with L tokens finishes when progress
reaches p + L, whatever the batch did meanwhile. A finished sequence frees its slot at once and
the head of the queue is admitted (strict FIFO, as ``engine/batcher.py``). Prefill is not
simulated.

Its load record reports, like the real agent's, the decode rate and mean batch over the last
10 s of decoding (kept here in one bucket per load report, so ``window`` reports' worth).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from pice.edge_protocol import LoadResponse
from pice_bench.sim.profiles import EdgeProfile


@dataclass
class SimSequence:
    request: int
    point: int
    tokens: int


class SimEdge:
    def __init__(self, profile: EdgeProfile, window: int = 10) -> None:
        self.profile = profile
        self.queue: deque[SimSequence] = deque()
        # (finish progress, admission order, sequence) of the running sequences.
        self._running: list[tuple[float, int, SimSequence]] = []
        self._admitted = 0
        self._progress = 0.0
        self._clock = 0.0
        # Decoding since the last load report (tokens, busy seconds, batch × busy seconds), and
        # the same of the reports before it, for the windowed rate and batch.
        self._bucket = (0.0, 0.0, 0.0)
        self._window: deque[tuple[float, float, float]] = deque(maxlen=window)
        self.tokens_generated = 0.0
        # Bumped whenever the batch changes, so an outdated completion event is ignored.
        self.version = 0

    @property
    def running(self) -> int:
        return len(self._running)

    def advance(self, now: float) -> None:
        """Decode up to ``now``."""
        elapsed = now - self._clock
        b = len(self._running)
        if b and elapsed > 0.0:
            step = elapsed * self.per_sequence(b)
            self._progress += step
            tokens, busy, batch = self._bucket
            self._bucket = (tokens + step * b, busy + elapsed, batch + b * elapsed)
            self.tokens_generated += step * b
        self._clock = now

    def arrive(self, sequence: SimSequence) -> None:
        """A sequence reaches the edge (call :meth:`advance` first)."""
        self.queue.append(sequence)
        self._admit()

    def _admit(self) -> None:
        while self.queue and len(self._running) < self.profile.max_sequences:
            sequence = self.queue.popleft()
            self._admitted += 1
            finish = self._progress + sequence.tokens
            heapq.heappush(self._running, (finish, self._admitted, sequence))
            self.version += 1

    def cancel(self, request: int, point: int) -> bool:
        """Drop the sequence of ``point`` (call :meth:`advance` first), as closing a job's
        stream does on an edge agent; ``False`` when it is not here (finished, or never came)."""
        for sequence in self.queue:
            if (sequence.request, sequence.point) == (request, point):
                self.queue.remove(sequence)
                return True
        for n, (_, _, sequence) in enumerate(self._running):
            if (sequence.request, sequence.point) == (request, point):
                self._running.pop(n)
                heapq.heapify(self._running)
                self.version += 1
                self._admit()
                return True
        return False

    def remaining(self, request: int, point: int) -> float | None:
        """Tokens the running sequence of ``point`` has left to decode (call :meth:`advance`
        first); ``None`` when it is not running here (queued, finished, or never came)."""
        for finish, _, sequence in self._running:
            if (sequence.request, sequence.point) == (request, point):
                return max(0.0, finish - self._progress)
        return None

    def finish_due(self) -> list[SimSequence]:
        """The sequences done by now (call :meth:`advance` first); admits from the queue."""
        done = []
        while self._running and self._running[0][0] <= self._progress + 1e-9:
            done.append(heapq.heappop(self._running)[2])
        if done:
            self.version += 1
            self._admit()
        return done

    def next_finish(self) -> float | None:
        """When the next running sequence will finish if the batch stays as it is."""
        if not self._running:
            return None
        remaining = self._running[0][0] - self._progress
        return self._clock + max(0.0, remaining) / self.per_sequence(len(self._running))

    def per_sequence(self, batch: int) -> float:
        """Tokens/s of each of ``batch`` running sequences: the profile's curve here; an edge
        sharing a core with others (:mod:`.testbed`) also depends on theirs."""
        return self.profile.curve.per_sequence(batch)

    def neighbours(self) -> Sequence[SimEdge]:
        """The edges whose speed changes with this one's batch (none: edges are independent)."""
        return ()

    def load(self) -> LoadResponse:
        """The ``/v1/load`` record the edge would answer now (call :meth:`advance` first)."""
        self._window.append(self._bucket)
        self._bucket = (0.0, 0.0, 0.0)
        tokens = sum(bucket[0] for bucket in self._window)
        busy = sum(bucket[1] for bucket in self._window)
        rate = tokens / busy if busy > 0.0 else 0.0
        batch = sum(bucket[2] for bucket in self._window) / busy if busy > 0.0 else None
        slots = self.profile.max_sequences
        queued = len(self.queue)
        running = len(self._running)
        return LoadResponse.model_construct(
            model="sim",
            ready=True,
            running_sequences=running,
            queued_sequences=queued,
            queued_jobs=queued,
            max_sequences=slots,
            free_sequence_slots=slots - running,
            kv_cells_total=0,
            kv_cells_reserved=0,
            kv_usage=0.0,
            decode_tokens_per_second=rate,
            decode_batch_mean=batch,
            threads=0,
            tokens_generated=int(self.tokens_generated),
            prefill_tokens=0,
            jobs=self._admitted,
            cancellations=0,
            prefix_cache_entries=0,
            prefix_cache_cells=0,
            prefix_cache_hits=0,
            prefix_cache_reused_tokens=0,
        )
