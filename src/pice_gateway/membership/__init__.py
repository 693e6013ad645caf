"""Dynamic membership and shared state between gateway replicas.

Edges register themselves (``/v1/edges``, :mod:`.routes`) and heartbeat; a :class:`.Fleet`
keeps the registry in step with a :class:`.store.FleetStore`: in this process by default
(:class:`.store.MemoryStore`), in Redis for several replicas (:mod:`.redis_store`).
"""

from pice_gateway.membership.fleet import Fleet
from pice_gateway.membership.store import FleetStore, MemoryStore

__all__ = ["Fleet", "FleetStore", "MemoryStore"]
