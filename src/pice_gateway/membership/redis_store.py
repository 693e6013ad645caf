"""The fleet store in Redis, shared by every gateway replica (``fleet.redis_url``).

Keys (under ``fleet.key_prefix``, ``pice:`` by default)::

    member:{name}        the edge's registration (JSON), expiring ``expiry_seconds`` after
                         its last heartbeat (PEXPIRE refreshes it)
    members              set of member names: an index to list them without SCAN; a name
                         whose key has expired is dropped from it when it is next read
    inflight:{replica}   hash edge -> sequences that replica has in flight, plus an ``~alive``
                         field so an idle replica's key still exists; expires
                         ``replica_ttl_seconds`` after the replica's last publication
    replicas             set of replica ids (same pruning as ``members``)

Each replica writes only its own ``inflight`` key, so no count is ever incremented by two
processes and a replica that dies takes its counts with it when the key expires: the sum the
others read needs no repair. Redis failures become :class:`~pice.errors.ServiceUnavailableError`
here, the one place they are translated.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from pice.edge_protocol import EdgeRegistration
from pice.errors import ServiceUnavailableError
from pice_gateway.membership.store import summed

# Not a valid edge name (those start with a letter or digit), so it never clashes with one.
_ALIVE = "~alive"


def _texts(values: Iterable[bytes | str]) -> list[str]:
    """Set members as text, sorted (the client decodes responses; its types cannot say so)."""
    return sorted(v.decode() if isinstance(v, bytes) else v for v in values)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except RedisError as exc:
        # redis-py's messages name the host and port, never the password of the URL.
        raise ServiceUnavailableError(
            f"the fleet store (Redis) failed: {type(exc).__name__}: {exc}"
        ) from exc


class RedisStore:
    """:class:`~pice_gateway.membership.store.FleetStore` over one Redis."""

    def __init__(self, redis: Redis, prefix: str = "pice:") -> None:
        self._redis = redis
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "pice:", timeout: float = 2.0) -> RedisStore:
        # Short timeouts: a replica whose Redis is gone keeps serving with what it last saw
        # (see Fleet.run) instead of hanging its sync loop or a registration.
        redis = Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(redis, prefix)

    def _member(self, name: str) -> str:
        return f"{self._prefix}member:{name}"

    def _counts(self, replica: str) -> str:
        return f"{self._prefix}inflight:{replica}"

    async def put_member(self, member: EdgeRegistration, ttl: float) -> None:
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._member(member.name), member.model_dump_json(), px=_ms(ttl))
            pipe.sadd(self._prefix + "members", member.name)
            await pipe.execute()

    async def touch_member(self, name: str, ttl: float) -> bool:
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.pexpire(self._member(name), _ms(ttl))
            # Re-indexed on every heartbeat: a concurrent ``members`` may have pruned the name
            # in the instant its old key had expired and before it registered again.
            pipe.sadd(self._prefix + "members", name)
            touched, _ = await pipe.execute()
        return bool(touched)

    async def remove_member(self, name: str) -> bool:
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._member(name))
            pipe.srem(self._prefix + "members", name)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def members(self) -> dict[str, EdgeRegistration]:
        async with _translated():
            names = _texts(await self._redis.smembers(self._prefix + "members"))
            values = await self._redis.mget([self._member(n) for n in names]) if names else []
            gone = [name for name, value in zip(names, values, strict=True) if value is None]
            if gone:
                await self._redis.srem(self._prefix + "members", *gone)
        live: dict[str, EdgeRegistration] = {}
        for name, value in zip(names, values, strict=True):
            if value is None:
                continue
            # A record another version wrote that this one cannot read is skipped, not fatal.
            with contextlib.suppress(ValidationError):
                live[name] = EdgeRegistration.model_validate_json(value)
        return live

    async def publish_in_flight(self, replica: str, counts: Mapping[str, int], ttl: float) -> None:
        key = self._counts(replica)
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            # Replaced whole (in one transaction), so an edge this replica no longer uses
            # drops out of its record.
            pipe.delete(key)
            record: dict[EncodableT, EncodableT] = {_ALIVE: 1}
            record.update(counts)
            pipe.hset(key, mapping=record)
            pipe.pexpire(key, _ms(ttl))
            pipe.sadd(self._prefix + "replicas", replica)
            await pipe.execute()

    async def in_flight(self, *, excluding: str) -> dict[str, int]:
        async with _translated():
            replicas = _texts(await self._redis.smembers(self._prefix + "replicas"))
            others = [r for r in replicas if r != excluding]
            async with self._redis.pipeline(transaction=False) as pipe:
                for replica in others:
                    pipe.hgetall(self._counts(replica))
                records: list[dict[str, str]] = await pipe.execute() if others else []
            dead = [r for r, record in zip(others, records, strict=True) if not record]
            if dead:
                await self._redis.srem(self._prefix + "replicas", *dead)
        return summed(
            {edge: int(count) for edge, count in record.items() if edge != _ALIVE}
            for record in records
        )

    async def withdraw(self, replica: str) -> None:
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._counts(replica))
            pipe.srem(self._prefix + "replicas", replica)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()
