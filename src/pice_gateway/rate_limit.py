"""Per-key request limits: a 429 with ``Retry-After`` once a key exceeds its rate.

The counting is the ``limits`` library's moving window (exact: at most N requests in any
60 seconds, no burst at a window edge) over its async storage, in-process by default and Redis
when ``rate_limit.storage_uri`` says so, so replicas can later share one budget. Keys are
counted under their :func:`pice.http.auth.key_id`, never the key itself, so a shared store
never holds a secret.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from limits import RateLimitItemPerMinute
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from pice.errors import RateLimitError
from pice.http.auth import BearerAuth
from pice_gateway.settings import RateLimitSettings

# The namespace of PICE's counters in a shared store.
_NAMESPACE = "pice-gateway"


class KeyRateLimiter:
    """``requests_per_minute`` for each caller, checked by :meth:`hit`."""

    def __init__(self, requests_per_minute: int, storage_uri: str = "async+memory://") -> None:
        storage = storage_from_string(storage_uri)
        if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
            raise ValueError(
                f"rate_limit.storage_uri {storage_uri!r} is not an async moving-window storage"
            )
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(requests_per_minute, namespace=_NAMESPACE)

    async def hit(self, caller: str) -> None:
        """Count one request of ``caller``; raise :class:`RateLimitError` when over the rate."""
        if await self._limiter.hit(self._item, caller):
            return
        stats = await self._limiter.get_window_stats(self._item, caller)
        # Whole seconds (the header's unit), rounded up so a retry at once is never early.
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitError(
            f"Rate limit reached: {self._item.amount} requests per minute for this API key. "
            f"Please try again in {retry_after}s.",
            retry_after=retry_after,
        )


def authorize(auth: BearerAuth, settings: RateLimitSettings) -> Callable[..., Awaitable[None]]:
    """One dependency for /v1: authenticate with ``auth``, then count against the key's rate.

    Without API keys the bucket is the client's address, so a loopback gateway with a rate set
    still limits each client.
    """
    rate = settings.requests_per_minute
    limiter = KeyRateLimiter(rate, settings.storage_uri) if rate is not None else None

    # ``auth`` is called here rather than declared as a sub-dependency: each level of
    # FastAPI's dependency solving is a measurable share of a pass-through request's CPU.
    async def check(request: Request) -> None:
        key = await auth(request)
        if limiter is None:
            return
        client = request.client.host if request.client else "unknown"
        await limiter.hit(key if key is not None else f"client-{client}")

    return check
