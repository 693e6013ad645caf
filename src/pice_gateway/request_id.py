"""What the gateway's upstream calls carry of the request being handled: its id, and its trace
context when tracing is on (the id itself: :mod:`pice.http.request_id`)."""

from __future__ import annotations

from collections.abc import MutableMapping

from pice.http.request_id import HEADER, NO_REQUEST, current_request_id
from pice.tracing import Tracing
from pice_gateway.upstream_http import HeaderHook


def propagate_request_id(headers: MutableMapping[str, str]) -> None:
    """A header hook: send the current request id upstream (nothing outside a request)."""
    request_id = current_request_id()
    if request_id != NO_REQUEST:
        headers[HEADER] = request_id


def request_hooks(tracing: Tracing) -> list[HeaderHook]:
    """The header hooks of the cloud and edge clients: the request id, and ``traceparent`` of
    the span current where the call is made (the sketch's, an edge job's) when tracing."""
    if not tracing.enabled:
        return [propagate_request_id]
    return [propagate_request_id, tracing.inject]
