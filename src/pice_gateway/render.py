"""OpenAI-shaped completions and chunks for answers the gateway assembles itself."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pice.errors import PiceError
from pice.http.sse import Event, sse_done, sse_error, sse_json
from pice.openai_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    completion_id,
    dump,
    now,
)
from pice_gateway.observers import RequestObservation
from pice_gateway.progressive import watch
from pice_gateway.progressive.accounting import total_usage
from pice_gateway.progressive.pipeline import Finished, ProgressiveRun, TextOut, Watched


class ChunkWriter:
    """Chunks of one stream: same id and created, usage null on each when usage was asked."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.id = completion_id()
        self.created = now()
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, choices: list[ChunkChoice], **extra: Any) -> dict[str, Any]:
        chunk = dump(
            ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices)
        )
        if not self.include_usage:
            chunk.pop("usage", None)
        chunk.update(extra)
        return chunk

    def role(self) -> dict[str, Any]:
        return self._chunk([ChunkChoice(index=0, delta=Delta(role="assistant", content=""))])

    def content(self, text: str) -> dict[str, Any]:
        return self._chunk([ChunkChoice(index=0, delta=Delta(content=text))])

    def finish(self, reason: str, **extra: Any) -> dict[str, Any]:
        return self._chunk([ChunkChoice(index=0, delta=Delta(), finish_reason=reason)], **extra)

    def usage(self, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chunk = self._chunk([], **extra)
        chunk["usage"] = usage
        return chunk


async def progressive_stream(
    run: ProgressiveRun, model: str, *, include_usage: bool, observation: RequestObservation
) -> AsyncIterator[Event]:
    """The SSE events of a progressive run; a failure after the first byte is an error event."""
    writer = ChunkWriter(model, include_usage=include_usage)
    yield sse_json(writer.role())
    try:
        async for event in run.events():
            if isinstance(event, TextOut):
                yield sse_json(writer.content(event.text))
            elif isinstance(event, Watched):
                yield watch.encode(event.event)
            elif isinstance(event, Finished):
                observation.ok()
                pice = event.report.model_dump(mode="json")
                if include_usage:
                    yield sse_json(writer.finish(event.finish_reason))
                    usage = dump(total_usage(event.report))
                    yield sse_json(writer.usage(usage, pice=pice))
                else:
                    yield sse_json(writer.finish(event.finish_reason, pice=pice))
    except PiceError as err:
        observation.failed(err)
        yield sse_error(err)
    except Exception as exc:
        observation.failed(exc)
        raise
    finally:
        observation.cancelled()  # the client left first (nothing if the run ended)
    yield sse_done()


async def progressive_completion(run: ProgressiveRun, model: str) -> dict[str, Any]:
    """The whole answer of a progressive run as one ``chat.completion`` body."""
    parts: list[str] = []
    # Closed explicitly: a run that met a stop sequence still has expansions to cancel.
    async with contextlib.aclosing(run.events()) as events:
        async for event in events:
            if isinstance(event, TextOut):
                parts.append(event.text)
            elif isinstance(event, Finished):
                completion = ChatCompletion(
                    id=completion_id(),
                    created=now(),
                    model=model,
                    choices=[
                        Choice(
                            index=0,
                            message=ResponseMessage(content="".join(parts)),
                            finish_reason=event.finish_reason,
                        )
                    ],
                    usage=total_usage(event.report),
                )
                body = dump(completion)
                body["pice"] = event.report.model_dump(mode="json")
                return body
    raise RuntimeError("progressive run ended without finishing")  # pragma: no cover
