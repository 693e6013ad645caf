"""Bearer-token authentication as a FastAPI dependency."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from pice.errors import AuthenticationError

# What the dependency returns: the matched key's id (see :func:`key_id`), or None when the
# server has no keys (loopback, or an explicit ``allow_insecure``).
BearerAuth = Callable[[HTTPConnection], Awaitable[str | None]]


def key_id(key: bytes) -> str:
    """A stable, non-secret name for a key: for rate-limit buckets and logs, never the key."""
    return "key-" + hashlib.sha256(key).hexdigest()[:12]


def bearer_auth(tokens: Sequence[SecretStr]) -> BearerAuth:
    """A dependency that accepts any of ``tokens``; with no tokens configured, it accepts all.

    It returns the :func:`key_id` of the key that matched (None when there are no keys), so a
    later dependency (the gateway's rate limiter) can count per key.
    """
    secrets = [token.get_secret_value().encode() for token in tokens]
    keyed = [(secret, key_id(secret)) for secret in secrets if secret]

    async def check(request: HTTPConnection) -> str | None:
        if not keyed:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise AuthenticationError(
                "Missing API key. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        candidate = supplied.strip().encode()
        # Compare against every key (constant time each) so timing does not reveal which one
        # nearly matched, nor how many keys there are before the match.
        matched: str | None = None
        for secret, name in keyed:
            if hmac.compare_digest(candidate, secret) and matched is None:
                matched = name
        if matched is None:
            # The message never echoes what was sent.
            raise AuthenticationError("Incorrect API key provided.")
        return matched

    return check
