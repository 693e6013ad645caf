"""What the HTTP layer needs of an engine: the seam between ``edge_agent/api`` and the engine.

The handlers of ``/v1/expand``, ``/v1/chat/completions``, ``/ready`` and ``/v1/load`` render a
prompt, submit a :class:`~edge_agent.engine.types.JobSpec`, iterate the job's events and read a
:class:`~edge_agent.engine.stats.LoadSnapshot`; the app's lifespan starts and stops the engine.
That is all of this protocol, so any engine that speaks it can serve those endpoints: the
llama.cpp :class:`~edge_agent.engine.engine.Engine` (the default), or an in-process fake in
tests (``tests/edge/test_backend_seam.py``) that needs no weights. Jobs in and events out are
the types of :mod:`edge_agent.engine.types`, so the wire format does not depend on the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Protocol

from edge_agent.engine.chat_template import Message, RenderedPrompt
from edge_agent.engine.stats import LoadSnapshot
from edge_agent.engine.types import EngineEvent, JobSpec


class PromptRenderer(Protocol):
    """Turns a conversation into the prompt text that opens the assistant's turn."""

    @property
    def has_template(self) -> bool: ...

    def render(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()
    ) -> RenderedPrompt: ...


class EngineJob(Protocol):
    """A submitted job as a handler holds it (the engine's ``JobHandle``).

    Iterate it for its events; the last is ``JobDone`` or ``JobFailed``. Leaving its
    ``async with`` block, or ``cancel()`` (a stream's ``on_close``), cancels whatever still
    runs: the client is gone, so its sequences must stop decoding and free their cache.
    """

    def cancel(self) -> None: ...

    # The protocol's own name, not typing.Self: that is 3.11+ and the edge runs on 3.10
    # (JetPack 6). An engine's job returning itself is a subtype, so it still conforms.
    async def __aenter__(self) -> EngineJob: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[EngineEvent]: ...


class EngineBackend(Protocol):
    """An engine the edge agent's HTTP API can serve."""

    def start(self) -> None:
        """Load and start; blocking, so the lifespan calls it off the event loop."""
        ...

    def stop(self) -> None:
        """Stop, failing what still runs, and free everything; blocking, called off the loop."""
        ...

    @property
    def ready(self) -> bool:
        """True once ``start()`` finished and until ``stop()``: ``/ready`` answers 200."""
        ...

    @property
    def chat(self) -> PromptRenderer:
        """The model's chat template; raises ServiceUnavailableError while loading."""
        ...

    def load(self) -> LoadSnapshot:
        """The load right now; cheap, called by ``/v1/load`` and every metrics scrape."""
        ...

    def submit(self, spec: JobSpec) -> EngineJob:
        """Queue a job; call on the event loop that will consume its events.

        Raises a :class:`~pice.errors.PiceError` before anything is queued for a job that can
        never run (too long for the context, too many sequences), so the handler can still
        answer with a status code.
        """
        ...
