"""A replica's membership: registrations in, the edge registry kept in step with the store.

Every change goes to the store first and then, on the replica that received it, straight to
the registry (``EdgeRegistry.join``/``leave``), so placement on that replica sees it at once.
Every replica also syncs every ``fleet.sync_seconds``: it reads the members (joining new ones,
leaving expired or departed ones), publishes its own in-flight counts and reads the others'.

Why a short poll rather than Redis pub/sub: an expiry is a key that silently vanishes, which
pub/sub does not announce unless Redis's keyspace notifications are enabled on the server, and
those (like any pub/sub message) are lost while a subscriber is reconnecting, so a poll would
be needed anyway to converge. A poll is one mechanism that covers joins, leaves, expiries and
counts with a staleness bounded by its interval (0.5 s: two small round trips per replica).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from pice.edge_protocol import EdgeRegistration, RegistrationAck
from pice.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from pice_gateway.edge_client import EdgeClient
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.membership.reconcile import reconcile
from pice_gateway.membership.store import FleetStore
from pice_gateway.settings import FleetSettings

logger = logging.getLogger(__name__)

Connect = Callable[[EdgeRegistration], EdgeClient]


class Fleet:
    """Registered edges of one replica over a shared :class:`FleetStore`.

    ``static`` names (configured ``edges``) cannot be registered; ``connect`` builds the client
    of a new member.
    """

    def __init__(
        self,
        registry: EdgeRegistry,
        store: FleetStore,
        settings: FleetSettings,
        connect: Connect,
        static: frozenset[str] = frozenset(),
        replica: str | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._settings = settings
        self._connect = connect
        self._static = static
        self.replica = replica or uuid.uuid4().hex[:12]
        # Members joined into this replica's registry, as last seen.
        self._joined: dict[str, EdgeRegistration] = {}
        # A sync reads the store and applies what it read; a registration in between would be
        # undone by that stale read, so the two never interleave.
        self._lock = asyncio.Lock()
        self._store_down = False

    def _ack(self, name: str, reachable: bool | None = None) -> RegistrationAck:
        return RegistrationAck(
            name=name,
            heartbeat_seconds=self._settings.heartbeat_seconds,
            expiry_seconds=self._settings.expiry_seconds,
            reachable=reachable,
        )

    def members(self) -> dict[str, EdgeRegistration]:
        """The members this replica has joined into its registry."""
        return dict(self._joined)

    def _join(self, member: EdgeRegistration) -> bool:
        """Join ``member`` into the registry unless it is there at that URL; whether it joined."""
        known = self._joined.get(member.name)
        self._joined[member.name] = member
        if known is not None and known.url == member.url and member.name in self._registry:
            return False
        self._registry.join(Edge(self._connect(member)))
        return True

    def _leave(self, name: str) -> None:
        if self._joined.pop(name, None) is not None:
            self._registry.leave(name)

    async def register(self, member: EdgeRegistration) -> RegistrationAck:
        """Add or refresh ``member``; a new one is polled before the answer."""
        if member.name in self._static:
            raise InvalidRequestError(
                f"edge {member.name!r} is configured statically on this gateway; register "
                "under another name",
                param="name",
                code="edge_name_reserved",
            )
        async with self._lock:
            await self._store.put_member(member, self._settings.expiry_seconds)
            joined = self._join(member)
        if joined:
            logger.info("edge %s registered at %s", member.name, member.url)
            reachable = await self._registry.poll_edge(member.name)
        else:
            reachable = any(s.up for s in self._registry.snapshot() if s.name == member.name)
        return self._ack(member.name, reachable)

    async def heartbeat(self, name: str) -> RegistrationAck:
        """Keep member ``name``; NotFoundError (register again) when it is not one."""
        if not await self._store.touch_member(name, self._settings.expiry_seconds):
            raise NotFoundError(
                f"edge {name!r} is not registered (it expired, or the gateway restarted); "
                "register again",
                code="unknown_edge",
            )
        return self._ack(name)

    async def leave(self, name: str) -> None:
        """Member ``name`` leaves now; its running jobs finish (the registry keeps them)."""
        async with self._lock:
            await self._store.remove_member(name)
            self._leave(name)

    async def sync_once(self) -> None:
        """Match the registry to the store and exchange in-flight counts with other replicas."""
        async with self._lock:
            shared = await self._store.members()
            changes = reconcile(self._joined, shared, self._static)
            for name in changes.leaves:
                logger.info("edge %s left the fleet (expired or left through a replica)", name)
                self._leave(name)
            joined = [member.name for member in changes.joins if self._join(member)]
        counts = self._registry.local_in_flight()
        ttl = self._settings.replica_ttl_seconds
        await self._store.publish_in_flight(self.replica, counts, ttl)
        self._registry.set_remote_in_flight(await self._store.in_flight(excluding=self.replica))
        if joined:
            await asyncio.gather(*(self._registry.poll_edge(name) for name in joined))

    async def run(self) -> None:
        """Sync forever (cancelled at shutdown). While the store is unreachable the replica
        keeps serving the members it last saw, and says so once in the log."""
        while True:
            try:
                await self.sync_once()
            except ServiceUnavailableError as exc:
                if not self._store_down:
                    logger.warning("fleet store unreachable, keeping the last members: %s", exc)
                self._store_down = True
            except Exception:
                # A bug in one sync must not end them: members would never change again.
                logger.exception("fleet sync failed; syncing continues")
            else:
                if self._store_down:
                    logger.info("fleet store reachable again")
                self._store_down = False
            await asyncio.sleep(self._settings.sync_seconds)

    async def aclose(self) -> None:
        """Withdraw this replica's counts (it is going away) and close the store."""
        try:
            await self._store.withdraw(self.replica)
        except ServiceUnavailableError as exc:
            logger.warning("could not withdraw this replica's counts: %s", exc)
        finally:
            await self._store.aclose()
