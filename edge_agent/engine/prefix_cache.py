"""A cross-job prefix cache: KV cells of recent prompt prefixes kept for the next job.

Requests to one engine share long prompt beginnings: every sketch request carries the same
instructions and examples, every expansion the same instructions, every chat the template's
system prompt. Once a job's prefix is prefilled, its cells are also tagged with a *cache
sequence id* (``llama_memory_seq_cp`` on a unified KV cache adds an id to the cells, it copies
nothing), so they outlive the job. A later job whose prefix starts with the same tokens gets
those cells tagged with its own sequence ids and prefills only the rest.

Accounting stays conservative, so a cached cell is never handed out twice: an entry reserves its
whole length in the :class:`CellBudget` (cells it shares with another entry or a running job
are counted twice), a job that reuses ``n`` cached tokens reserves ``n`` cells fewer, and an
entry is only evicted while no running job reuses it. Entries are evicted when slots run out or
when admission needs their cells: those never reused first (so a stream of one-off prompts
cannot push out a prefix every request shares), then least recently used. Engine thread only.

An entry belongs to the LoRA adapter its cells were computed under (``adapter``, ``None`` for
the base model): KV computed with an adapter differs from the base model's, so a prefix is
only ever reused by a job decoded under the same adapter.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.engine.admission import CellBudget

# Reusing fewer tokens than this saves less than the bookkeeping is worth.
MIN_REUSE_TOKENS = 16


class CellSharing(Protocol):
    """What the cache needs of a context (``LlamaContext``)."""

    def share_cells(self, source: int, target: int, count: int) -> None: ...

    def drop_sequence(self, seq: int) -> None: ...


@dataclass(eq=False)
class CachedPrefix:
    tokens: tuple[int, ...]
    seq_id: int  # the cache's own llama.cpp sequence id
    adapter: str | None = None  # the named adapter its cells were computed under
    users: int = 0  # running jobs whose sequences share these cells
    hits: int = 0  # jobs that reused it so far
    last_used: float = field(default_factory=time.monotonic)

    @property
    def cells(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class PrefixHit:
    entry: CachedPrefix
    tokens: int  # how many leading prefix tokens the entry supplies


@dataclass
class PrefixCacheStats:
    hits: int = 0
    reused_tokens: int = 0
    evicted: int = 0


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """Up to ``len(seq_ids)`` cached prefixes, each under one of ``seq_ids``."""

    def __init__(self, ctx: CellSharing, budget: CellBudget, seq_ids: Sequence[int]) -> None:
        self._ctx = ctx
        self._budget = budget
        self._free_ids = list(reversed(seq_ids))
        self.entries: list[CachedPrefix] = []
        self.stats = PrefixCacheStats()

    @property
    def enabled(self) -> bool:
        return bool(self._free_ids or self.entries)

    @property
    def cells(self) -> int:
        return sum(e.cells for e in self.entries)

    def lookup(self, prefix: Sequence[int], adapter: str | None = None) -> PrefixHit | None:
        """The entry of ``adapter`` sharing the longest beginning with ``prefix``, if it is
        worth reusing.

        At least the prefix's last token is left to prefill: its logits are needed.
        """
        best: PrefixHit | None = None
        for entry in self.entries:
            if entry.adapter != adapter:
                continue
            n = min(common_prefix_length(entry.tokens, prefix), len(prefix) - 1)
            if n >= MIN_REUSE_TOKENS and (best is None or n > best.tokens):
                best = PrefixHit(entry, n)
        return best

    def attach(self, hit: PrefixHit, seq_ids: Sequence[int]) -> None:
        """Give ``seq_ids`` the entry's first ``hit.tokens`` cells; pins the entry."""
        for seq_id in seq_ids:
            self._ctx.share_cells(hit.entry.seq_id, seq_id, hit.tokens)
        hit.entry.users += 1
        hit.entry.hits += 1
        hit.entry.last_used = time.monotonic()
        self.stats.hits += 1
        self.stats.reused_tokens += hit.tokens

    def detach(self, entry: CachedPrefix) -> None:
        entry.users -= 1

    def store(self, prefix: Sequence[int], source_seq_id: int, adapter: str | None = None) -> None:
        """Keep the cells of a just-prefilled ``prefix`` (held by ``source_seq_id``, computed
        under ``adapter``)."""
        if len(prefix) < MIN_REUSE_TOKENS or not self.enabled:
            return
        tokens = tuple(prefix)
        same = [e for e in self.entries if e.adapter == adapter]
        for entry in same:
            if entry.tokens[: len(tokens)] == tokens:  # already covered
                entry.last_used = time.monotonic()
                return
        # An idle entry that is a beginning of this one is superseded by it.
        for entry in [e for e in same if e.users == 0]:
            if tokens[: entry.cells] == entry.tokens:
                self._evict(entry)
        if not self._free_ids and not self.evict_one():
            return
        if not self.make_room(len(tokens)):
            return
        seq_id = self._free_ids.pop()
        self._ctx.share_cells(source_seq_id, seq_id, len(tokens))
        self._budget.reserve(len(tokens))
        self.entries.append(CachedPrefix(tokens, seq_id, adapter))

    def make_room(self, cells: int, keep: CachedPrefix | None = None) -> bool:
        """Evict idle entries (never reused, then least recently used first) so that ``cells``
        can be reserved.

        Evicts nothing when even evicting every idle entry would not make room.
        """
        if self._budget.can_reserve(cells):
            return True
        idle = sum(e.cells for e in self.entries if e.users == 0 and e is not keep)
        if not self._budget.can_reserve(cells - idle):
            return False
        while not self._budget.can_reserve(cells):
            self.evict_one(keep)
        return True

    def evict_one(self, keep: CachedPrefix | None = None) -> bool:
        """Evict one idle entry (never reused, then least recently used first); False if none."""
        idle = [e for e in self.entries if e.users == 0 and e is not keep]
        if not idle:
            return False
        # Prompts seen once (a unique chat, one point of a cloud-side SoT expansion) go before
        # prefixes that proved shared (the sketch instructions), then least recently used.
        self._evict(min(idle, key=lambda e: (e.hits > 0, e.last_used)))
        return True

    def _evict(self, entry: CachedPrefix) -> None:
        self.entries.remove(entry)
        self._ctx.drop_sequence(entry.seq_id)
        self._budget.release(entry.cells)
        self._free_ids.append(entry.seq_id)
        self.stats.evicted += 1
