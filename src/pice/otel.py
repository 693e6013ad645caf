"""The OpenTelemetry SDK behind :class:`pice.tracing.Tracing` (the ``otel`` extra).

Imported only by :func:`pice.tracing.build_tracing` when tracing is enabled, or by tests that
build an :class:`OtelTracing` over their own provider (an in-memory exporter).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pice.tracing import Attributes, Span, Tracing, TracingSettings

# W3C trace context only (no baggage): what is sent to, and read from, the other services.
_PROPAGATOR = TraceContextTextMapPropagator()


class OtelSpan(Span):
    def __init__(self, span: trace.Span, *, owned: bool = True) -> None:
        self.span = span
        # A span this wrapper did not start (the current one, looked up) is not ended by it.
        self._ended = not owned

    def set(self, attributes: Attributes) -> None:
        self.span.set_attributes(attributes)

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        self.span.add_event(name, attributes)

    def fail(self, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            self.span.record_exception(error)
            description = f"{type(error).__name__}: {error}"
        else:
            description = error
        self.span.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.span.end()

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)


class OtelTracing(Tracing):
    """Spans from ``provider``'s tracer; the provider is this app's, never the global one."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("pice")

    @classmethod
    def from_settings(cls, settings: TracingSettings, default_service: str) -> OtelTracing:
        """A provider exporting in batches (``OTEL_BSP_*``) with the SDK's sampler
        (``OTEL_TRACES_SAMPLER``); resource attributes from ``OTEL_RESOURCE_ATTRIBUTES``."""
        service = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or default_service
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        exporter: SpanExporter
        if settings.exporter == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def start(
        self,
        name: str,
        *,
        parent: Span | None = None,
        attributes: Attributes | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> Span:
        kind = SpanKind.INTERNAL
        if carrier is not None:
            context = _PROPAGATOR.extract(carrier)
            kind = SpanKind.SERVER
        elif isinstance(parent, OtelSpan):
            context = trace.set_span_in_context(parent.span)
        else:
            context = None  # the current context
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        return OtelSpan(span)

    def current(self) -> Span:
        return OtelSpan(trace.get_current_span(), owned=False)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        _PROPAGATOR.inject(headers)

    def shutdown(self) -> None:
        self.provider.shutdown()


class TraceIdFilter(logging.Filter):
    """Stamps records logged inside a span with its ``trace_id`` and ``span_id`` (hex, as trace
    back ends show them), so a JSON log line leads to its trace; filters nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True
