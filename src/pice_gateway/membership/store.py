"""What gateway replicas share: the registered edges, and each replica's in-flight counts.

Two kinds of record, both expiring, so that nothing has to clean up after a process that died:

- a **member** (an edge's registration) lives ``expiry_seconds`` past its last heartbeat;
- a **replica's in-flight counts** (sequences it has on each edge) live ``replica_ttl`` past
  its last publication, under a key of its own, so a dead replica's load vanishes with its key
  and the live replicas' sum never needs a correction.

:class:`MemoryStore` is the single-process default; ``redis_store.RedisStore`` the shared one.
A store that cannot be reached raises :class:`~pice.errors.ServiceUnavailableError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from pice.edge_protocol import EdgeRegistration


class FleetStore(Protocol):
    async def put_member(self, member: EdgeRegistration, ttl: float) -> None:
        """Add or replace ``member``; it expires ``ttl`` seconds from now."""
        ...

    async def touch_member(self, name: str, ttl: float) -> bool:
        """Push member ``name``'s expiry to ``ttl`` from now; False if it is not a member."""
        ...

    async def remove_member(self, name: str) -> bool:
        """Remove member ``name``; whether it was one."""
        ...

    async def members(self) -> dict[str, EdgeRegistration]:
        """Every live member by name."""
        ...

    async def publish_in_flight(self, replica: str, counts: Mapping[str, int], ttl: float) -> None:
        """Replace ``replica``'s in-flight counts per edge; they expire ``ttl`` from now."""
        ...

    async def in_flight(self, *, excluding: str) -> dict[str, int]:
        """Sequences in flight per edge, summed over every live replica but ``excluding``."""
        ...

    async def withdraw(self, replica: str) -> None:
        """Drop ``replica``'s counts now (a replica shutting down cleanly)."""
        ...

    async def aclose(self) -> None: ...


def summed(per_replica: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counts per edge added up over replicas."""
    total: dict[str, int] = {}
    for counts in per_replica:
        for edge, count in counts.items():
            total[edge] = total.get(edge, 0) + count
    return total


class MemoryStore:
    """The default store: this process only (one gateway), expiry against ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._members: dict[str, tuple[EdgeRegistration, float]] = {}
        self._counts: dict[str, tuple[dict[str, int], float]] = {}

    def _live_members(self) -> dict[str, tuple[EdgeRegistration, float]]:
        now = self._clock()
        self._members = {n: entry for n, entry in self._members.items() if entry[1] > now}
        return self._members

    async def put_member(self, member: EdgeRegistration, ttl: float) -> None:
        self._members[member.name] = (member, self._clock() + ttl)

    async def touch_member(self, name: str, ttl: float) -> bool:
        entry = self._live_members().get(name)
        if entry is None:
            return False
        self._members[name] = (entry[0], self._clock() + ttl)
        return True

    async def remove_member(self, name: str) -> bool:
        return self._live_members().pop(name, None) is not None

    async def members(self) -> dict[str, EdgeRegistration]:
        return {name: member for name, (member, _) in self._live_members().items()}

    async def publish_in_flight(self, replica: str, counts: Mapping[str, int], ttl: float) -> None:
        self._counts[replica] = (dict(counts), self._clock() + ttl)

    async def in_flight(self, *, excluding: str) -> dict[str, int]:
        now = self._clock()
        self._counts = {r: entry for r, entry in self._counts.items() if entry[1] > now}
        return summed(counts for r, (counts, _) in self._counts.items() if r != excluding)

    async def withdraw(self, replica: str) -> None:
        self._counts.pop(replica, None)

    async def aclose(self) -> None:
        return None
