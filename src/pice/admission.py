"""Admission control: a bounded amount of work in flight, the rest refused with 429 at once.

Used by the gateway (progressive runs in flight, ``admission.max_progressive_requests``) and
the edge agent (jobs waiting for the batcher, ``max_queued_jobs``). Past the bound, new work is
refused before any byte or upstream call with :class:`~pice.errors.OverloadedError` (429 and
``Retry-After``), so nothing is queued without bound and a refused request is never half done:
its client (the OpenAI SDK retries 429) or the gateway (it places the point elsewhere) goes on.

Pure and synchronous: the caller takes a :class:`Ticket` per unit of work and gives it back
when that work leaves the bounded stage, however it leaves.
"""

from __future__ import annotations

from pice.errors import OverloadedError


class Ticket:
    """One admitted run; :meth:`release` is idempotent, so every exit path may call it."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate: AdmissionGate | None = gate

    def release(self) -> None:
        if self._gate is not None:
            self._gate._leave()
            self._gate = None


class AdmissionGate:
    def __init__(self, limit: int | None, *, what: str, retry_after: int = 1) -> None:
        self._limit = limit
        self._what = what
        self._retry_after = retry_after
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def admit(self) -> Ticket:
        """A ticket for one more run, or :class:`OverloadedError` when the gate is full."""
        if self._limit is not None and self._in_flight >= self._limit:
            raise OverloadedError(
                f"Overloaded: {self._limit} {self._what} already; retry in {self._retry_after}s.",
                retry_after=self._retry_after,
            )
        self._in_flight += 1
        return Ticket(self)

    def _leave(self) -> None:
        self._in_flight -= 1
