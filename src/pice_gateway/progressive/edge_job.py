"""One ``/v1/expand`` job on an edge: what it holds, how its stream is timed, how it fails.

The dispatcher (:mod:`~pice_gateway.progressive.dispatch`) decides what a job runs and what
happens when it ends; this module is the wire side it needs. :func:`read_job` reads a job's
event stream under its two bounds and classifies what went wrong:

- **Queued is not stalled.** The edge sends its ``start`` event when its batcher admits the
  job, and nothing before it but SSE keep-alive comments, so until then the job may be waiting
  behind others on a healthy edge: ``queue_seconds`` covers connecting, the response headers
  and the wait for admission. From ``start`` on, every event pushes the deadline
  ``stall_seconds`` ahead, covering prefill and every gap between tokens.
- A job never admitted within the queue bound fails with its edge kept up (the edge is busy,
  not broken); a stall after admission, or a broken connection, takes the edge down; an error
  the edge reported, or a malformed event, does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from pice.edge_protocol import ExpandEvent, StartEvent
from pice.errors import PiceError, UpstreamError, UpstreamProtocolError, UpstreamTimeoutError
from pice.openai_protocol import Usage


class JobFailed(Exception):
    """An edge job ended early; ``edge_down`` when its edge should be taken out of placement."""

    def __init__(self, err: PiceError, *, edge_down: bool) -> None:
        super().__init__(err.message)
        self.err = err
        self.edge_down = edge_down


def _failure(err: PiceError) -> JobFailed:
    """A job's failure; a transport failure (not a protocol breach) takes its edge down."""
    edge_down = isinstance(err, UpstreamError) and not isinstance(err, UpstreamProtocolError)
    return JobFailed(err, edge_down=edge_down)


@dataclass
class EdgeJob:
    """One ``/v1/expand`` job in flight, and what it has not finished or reported yet."""

    edge: str
    points: list[int]
    candidates: int = 1
    # Per unfinished point, its candidates still decoding.
    open: dict[int, int] = field(default_factory=dict)
    # Tokens its events reported and its ``done`` usage has not yet covered.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # A hedge: a one-point duplicate whose text is held back until it takes the point over.
    hedge: bool = False
    held_text: str = ""
    # Started from its edge's lane (a hedge or a companion is not, and leaves the lane alone).
    lane: bool = True
    # A companion: one more candidate of its one point, numbered from ``offset``, sampled as
    # candidate ``sample_as`` when its edge serves the same model as the point's own.
    companion: bool = False
    offset: int = 0
    sample_as: int | None = None
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.open = dict.fromkeys(self.points, self.candidates)

    def unreported_usage(self) -> Usage | None:
        if not (self.prompt_tokens or self.completion_tokens):
            return None
        return Usage.of(self.prompt_tokens, self.completion_tokens)


async def read_job(
    edge: str,
    events: AsyncGenerator[ExpandEvent, None],
    on_event: Callable[[ExpandEvent], bool],
    *,
    queue_seconds: float,
    stall_seconds: float,
) -> None:
    """Give each of ``edge``'s ``events`` to ``on_event`` until it returns ``True``.

    The stream is closed on every way out (which makes the edge cancel the job's sequences).
    Raises :class:`JobFailed` when the stream times out or fails; ``on_event`` may raise it too.
    """
    loop = asyncio.get_running_loop()
    admitted = False
    try:
        # One deadline: ``queue_seconds`` from now until the ``start`` event, then
        # ``stall_seconds`` from each event.
        async with (
            asyncio.timeout(queue_seconds) as deadline,
            contextlib.aclosing(events) as stream,
        ):
            async for event in stream:
                admitted = admitted or isinstance(event, StartEvent)
                if admitted:
                    deadline.reschedule(loop.time() + stall_seconds)
                if on_event(event):
                    return
    except TimeoutError as exc:
        if not admitted:
            message = f"edge {edge} did not admit the job within {queue_seconds}s"
            raise JobFailed(UpstreamTimeoutError(message), edge_down=False) from exc
        message = f"edge {edge} stalled: no event for {stall_seconds}s"
        raise JobFailed(UpstreamTimeoutError(message), edge_down=True) from exc
    except PiceError as err:
        raise _failure(err) from err
