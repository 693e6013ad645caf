"""Which :class:`~pice.tracing.Tracing` an app gets (apart from :mod:`pice.tracing`, which the
SDK's module builds on, so that neither imports the other)."""

from __future__ import annotations

import logging

from pice.tracing import NO_TRACING, Tracing, TracingSettings


def build_tracing(settings: TracingSettings, default_service: str) -> Tracing:
    """The app's tracing: :data:`~pice.tracing.NO_TRACING` unless enabled, else the
    OpenTelemetry SDK's (:mod:`pice.otel`, imported only then)."""
    if not settings.enabled:
        return NO_TRACING
    try:
        from pice.otel import OtelTracing
    except ImportError as exc:
        raise _missing_extra() from exc
    return OtelTracing.from_settings(settings, default_service)


def log_filters(settings: TracingSettings) -> list[logging.Filter]:
    """Filters for the log handler: with tracing on, the current span's ids on each record."""
    if not settings.enabled:
        return []
    try:
        from pice.otel import TraceIdFilter
    except ImportError as exc:
        raise _missing_extra() from exc
    return [TraceIdFilter()]


def _missing_extra() -> RuntimeError:
    return RuntimeError("tracing.enabled needs OpenTelemetry: pip install 'pice[otel]'")
