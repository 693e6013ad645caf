"""Bearer-token authentication as a FastAPI dependency."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request

from pice.errors import AuthenticationError


def bearer_auth(tokens: Sequence[str]) -> Callable[[Request], Awaitable[None]]:
    """A dependency that accepts any of ``tokens``; with no tokens configured, it accepts all."""
    allowed = [t.encode() for t in tokens if t]

    async def check(request: Request) -> None:
        if not allowed:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            raise AuthenticationError(
                "Missing API key. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        candidate = supplied.strip().encode()
        # Compare against every key so timing does not reveal which one nearly matched.
        matched = False
        for token in allowed:
            matched |= secrets.compare_digest(candidate, token)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")

    return check
