"""Where a finished request is observed: its ``pice`` report and how it ended.

Every chat completion request that reaches the handler ends in exactly one call of each
registered :class:`ReportObserver`, on every path: progressive, cloud-direct, refused before a
path was chosen (report ``None``), failed, or abandoned by its client. Observers are set when the
app is built (``create_app(report_observers=...)``) and live on the app state; the default logs
one line per request. Metrics plug in here.

Requests refused before the handler runs (bad JSON or fields, a wrong API key, a body over the
size limit) are not observed: there is no request to report on yet.

An observer runs on the event loop at the end of the response; it must be quick and must not
raise (if it does, the error is logged and the other observers still run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pice.errors import PiceError
from pice.http.disconnect import ClientDisconnected
from pice_gateway.progressive.accounting import PiceReport

logger = logging.getLogger(__name__)

Status = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True)
class RequestOutcome:
    """How one request ended. ``error`` is what the client was told (status ``error``)."""

    request_id: str
    # The model name the client asked for.
    model: str
    stream: bool
    status: Status
    error: PiceError | None = None


class ReportObserver(Protocol):
    def __call__(self, report: PiceReport | None, outcome: RequestOutcome) -> None:
        """``report`` is the request's ``pice`` report as far as it got; ``None`` when it was
        refused before a path was chosen (unknown model, a field the path cannot honour)."""
        ...


def log_report(report: PiceReport | None, outcome: RequestOutcome) -> None:
    """The default observer: one INFO line per request (a WARNING when it failed)."""
    level = logging.WARNING if outcome.status == "error" else logging.INFO
    path = "-" if report is None else f"{report.mode}/{report.reason}"
    tokens = "" if report is None else _tokens(report)
    error = (
        ""
        if outcome.error is None
        else f" error={outcome.error.error_type}: {outcome.error.described}"
    )
    logger.log(
        level,
        "request %s model=%s stream=%s status=%s path=%s%s%s",
        outcome.request_id,
        outcome.model,
        outcome.stream,
        outcome.status,
        path,
        tokens,
        error,
    )


def _tokens(report: PiceReport) -> str:
    sources = ",".join(point.edge or "-" for point in report.points)
    return (
        f" points={len(report.points)} sources={sources or '-'}"
        f" total_ms={report.timings.total_ms}"
        f" cloud_tokens={report.cloud_usage.total_tokens}"
        f" edge_tokens={report.edge_usage.total_tokens}"
    )


class RequestObservation:
    """One request's observation: reports to every observer exactly once, however it ends.

    The handler makes one per request and sets :attr:`report` once a path has one; whichever of
    :meth:`ok`, :meth:`failed` or :meth:`cancelled` comes first decides the outcome, later calls
    do nothing (a stream's end and its response's close callback may both arrive).
    """

    def __init__(
        self,
        observers: Sequence[ReportObserver],
        *,
        request_id: str,
        model: str,
        stream: bool,
    ) -> None:
        self._observers = observers
        self.request_id = request_id
        self._model = model
        self._stream = stream
        self.report: PiceReport | None = None
        self._done = False

    def ok(self) -> None:
        self._finish("ok")

    def cancelled(self) -> None:
        self._finish("cancelled")

    def failed(self, exc: BaseException) -> None:
        """The request ended with ``exc``: a client that left is ``cancelled``, else ``error``."""
        if isinstance(exc, asyncio.CancelledError | ClientDisconnected):
            self.cancelled()
        elif isinstance(exc, PiceError):
            self._finish("error", exc)
        else:
            self._finish("error", PiceError(f"internal error: {type(exc).__name__}"))

    def _finish(self, status: Status, error: PiceError | None = None) -> None:
        if self._done:
            return
        self._done = True
        outcome = RequestOutcome(self.request_id, self._model, self._stream, status, error)
        for observe in self._observers:
            try:
                observe(self.report, outcome)
            except Exception:
                logger.exception("report observer %r failed", observe)
