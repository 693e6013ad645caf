"""Optional distributed tracing: the seam the gateway and the edge agent trace through.

Off by default. :class:`Tracing` itself is the off state: every method does nothing, so the
request path calls it unconditionally at the cost of a method call, and nothing of
OpenTelemetry is imported. :func:`pice.tracing_factory.build_tracing` (called by each app
factory, never at import) returns it unless ``tracing.enabled``; then it builds
:class:`pice.otel.OtelTracing`, the official OpenTelemetry SDK behind the same methods, with
the app's own tracer provider (the global one is never set, so two apps in one process, as in
the tests, keep their spans apart).

Spans are parented explicitly where work moves between tasks (a request's points and jobs run
in tasks that outlive the code that placed them): a caller keeps the :class:`Span` it wants as
the parent and passes it to :meth:`Tracing.start`. :meth:`Span.activate` makes a span current
for a block in one task, which is what :meth:`Tracing.inject` reads to send W3C
``traceparent`` on an upstream call. :class:`TracingMiddleware` continues a caller's trace
(its ``traceparent``) with one server span per traced request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Literal

from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pice.http.request_id import current_request_id

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
Attributes = Mapping[str, AttributeValue]


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (needs the ``otel`` extra). Standard ``OTEL_*`` variables apply
    where these leave a choice open (endpoint, headers, sampler, batch sizes)."""

    enabled: bool = False
    # ``otlp``: OTLP over HTTP/protobuf; ``console``: spans printed to stdout (debugging).
    exporter: Literal["otlp", "console"] = "otlp"
    # The collector's traces URL; None: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
    # OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), else http://localhost:4318/v1/traces.
    otlp_endpoint: str | None = None
    # ``service.name`` of the spans; None: OTEL_SERVICE_NAME, else pice-gateway / pice-edge.
    service_name: str | None = None


class Span:
    """One unit of traced work. This base class is the untraced span: it records nothing."""

    def set(self, attributes: Attributes) -> None:
        """Add attributes (later values of a key replace earlier ones)."""

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Record a point-in-time event on the span (a failover, say)."""

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed with ``error``."""

    def end(self) -> None:
        """End the span; ending it again does nothing."""

    def activate(self) -> AbstractContextManager[None]:
        """Make this span the current one for the block (within one task)."""
        return _NOTHING


# Reusable, and several times cheaper to enter than a generator-based context manager: the
# untraced request path enters one per edge job.
_NOTHING = contextlib.nullcontext()
NO_SPAN = Span()


class Tracing:
    """Tracing switched off: every span is :data:`NO_SPAN` and nothing is propagated."""

    enabled = False

    def start(
        self,
        name: str,
        *,
        parent: Span | None = None,
        attributes: Attributes | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> Span:
        """Start a span, child of ``parent`` (default: the current span), or of the remote
        caller named by ``carrier``'s ``traceparent`` (then it is a server span)."""
        return NO_SPAN

    def current(self) -> Span:
        """The current span, to use as a later ``parent`` (ending it here does nothing)."""
        return NO_SPAN

    @contextlib.contextmanager
    def span(self, name: str, attributes: Attributes | None = None) -> Iterator[Span]:
        """A child of the current span around a block, current inside it, failed by an
        exception that leaves it."""
        span = self.start(name, attributes=attributes)
        try:
            with span.activate():
                yield span
        except Exception as exc:
            span.fail(exc)
            raise
        finally:
            span.end()

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Put the current span's W3C trace context (``traceparent``) into ``headers``."""

    def shutdown(self) -> None:
        """Flush and stop exporting (blocking; at shutdown)."""


NO_TRACING = Tracing()


class TracingMiddleware:
    """One server span per request to ``paths``, continuing the caller's ``traceparent``.

    Pure ASGI like the request-id middleware: a streamed response is inside the span until its
    last byte. Only the listed paths are traced, so probes, ``/metrics`` and the gateway's
    load polls of its edges make no traces. Added only when tracing is on.
    """

    def __init__(self, app: ASGIApp, *, tracing: Tracing, paths: Collection[str]) -> None:
        self.app = app
        self.tracing = tracing
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        method, path = scope["method"], scope["path"]
        span = self.tracing.start(
            f"{method} {path}",
            carrier=headers,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "pice.request_id": current_request_id(),
            },
        )

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set({"http.response.status_code": status})
                if status >= 500:
                    span.fail(f"HTTP {status}")
            await send(message)

        try:
            with span.activate():
                await self.app(scope, receive, send_status)
        except Exception as exc:
            span.fail(exc)
            raise
        finally:
            span.end()
