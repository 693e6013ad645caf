"""Log lines of the gateway and the edge agent: the request id on each, as text or JSON.

:func:`configure_logging` is called once by ``pice gateway`` and ``pice edge serve`` (never at
import, never by an app factory: tests and embedders keep their own logging). It gives the root
logger one stderr handler that

- stamps every record with the id of the request being handled (:class:`RequestIdFilter`,
  reading :mod:`pice.http.request_id`'s context variable; ``-`` outside a request), and
- writes ``text`` lines (``2026-01-01 12:00:00,000 INFO pice_gateway.observers [r-42]: …``)
  or ``json``: one object per line with ``time``, ``level``, ``logger``, ``message`` and
  ``request_id``, plus any ``extra`` fields and ``exc_info`` (python-json-logger writes them),
  and with tracing on the current span's ``trace_id`` and ``span_id``.

uvicorn is started with ``log_config=None`` so its own records (access lines included, which
uvicorn logs while the response starts, inside the request) go through the same handler.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import IO, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from pice.http.request_id import current_request_id

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# python-json-logger takes the listed record attributes as the object's keys (renamed below).
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# uvicorn adds a terminal-coloured copy of some messages as an extra; not worth a key.
_NOT_EXTRAS = (*RESERVED_ATTRS, "color_message")


class RequestIdFilter(logging.Filter):
    """Stamps every record with ``request_id`` (``-`` outside a request); filters nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(_JSON_FIELDS, rename_fields=_JSON_NAMES, reserved_attrs=_NOT_EXTRAS)
    return logging.Formatter(TEXT_FORMAT)


def log_handler(
    log_format: LogFormat,
    stream: IO[str] | None = None,
    filters: Iterable[logging.Filter] = (),
) -> logging.Handler:
    """A handler writing ``log_format`` lines, each with its request id, to ``stream``;
    ``filters`` may stamp more fields (``pice.tracing_factory.log_filters``: trace ids)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    for log_filter in (RequestIdFilter(), *filters):
        handler.addFilter(log_filter)
    handler.setFormatter(formatter(log_format))
    return handler


def configure_logging(
    log_format: LogFormat,
    level: int | str = logging.INFO,
    filters: Iterable[logging.Filter] = (),
) -> None:
    """Make the root logger write ``log_format`` lines with request ids.

    Replaces the root's plain stream handlers (``logging.basicConfig``'s, which ``pice`` sets up
    before the subcommand runs, or an earlier call's), so no line is written twice; any other
    handler (a file handler, a test's log capture) is kept.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(log_handler(log_format, filters=filters))
    root.setLevel(level)
