"""A real edge agent (``edge_agent.api.app``) over a scripted engine, dialling gateways.

The agent's whole stack runs (its lifespan, the dialler, the channel session, the same
``start_expand`` as ``POST /v1/expand``); only the engine is scripted (the shared fake of
``tests.support.fake_engine``, its jobs writing each point's words), so a test decides
what each point says and when a job hangs. :func:`running_edge` runs the agent's lifespan in a
thread of its own and never starts its HTTP server: the edge has no listening socket at all,
as an edge behind NAT has none the gateway could reach. ``python -m tests.gateway.channel_edge``
runs one as a process, for a test that kills it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from edge_agent.api.app import ServedBackend, create_app
from edge_agent.engine import EngineEvent, JobDone, JobSpec, JobStarted, SequenceDone, TokenDelta
from edge_agent.engine.stats import LoadSnapshot
from edge_agent.settings import EdgeSettings
from tests.gateway.fakes import point_words
from tests.support.fake_engine import FIGURES, FakeBackend, FakeJob

TOKEN = "fleet-token"


class ScriptedJob(FakeJob):
    """Each sequence writes its point's words (``point_words``, as the fake HTTP edge does),
    one "token" per ``token_delay``; with ``hold`` it stops after the first word until
    cancelled."""

    def __init__(self, engine: ScriptedEngine, spec: JobSpec) -> None:
        super().__init__(spec)
        self.engine = engine

    async def _events(self) -> AsyncIterator[EngineEvent]:
        engine = self.engine
        engine.running += 1
        try:
            sequences = self.spec.sequences
            await asyncio.sleep(engine.admit_delay)  # waiting in the batcher's queue
            yield JobStarted("job", prompt_tokens=20, queued_ms=0.0)
            words = [
                # "1. **Alpha point**:" is point 0's suffix (edge_agent.prompts.point_suffix).
                point_words(int(s.suffix.split(".", 1)[0]) - 1, engine.author)[
                    : s.params.max_tokens
                ]
                for s in sequences
            ]
            for step in range(max(len(w) for w in words)):
                await asyncio.sleep(engine.token_delay)
                for seq, seq_words in enumerate(words):
                    if step < len(seq_words):
                        yield TokenDelta(seq, seq_words[step])
                if engine.hold:
                    engine.held.set()
                    await asyncio.sleep(3600)
            for seq, seq_words in enumerate(words):
                yield SequenceDone(
                    seq, "stop", "".join(seq_words), 5, len(seq_words), -1, -0.5, 1, 2
                )
            self.ended = True
            yield JobDone(prompt_tokens=20, completion_tokens=sum(map(len, words)))
        finally:
            engine.running -= 1


# Room for 16 sequences, no cell reserved: the gateway places by the free slots it reads.
SCRIPTED_FIGURES = dataclasses.replace(
    FIGURES,
    max_sequences=16,
    kv_cells_total=4096,
    kv_cells_reserved=0,
    decode_tokens_per_second=100.0,
    tokens_generated=0,
    prefill_tokens=0,
    decode_batch_mean=None,
)


@dataclass(kw_only=True)
class ScriptedEngine(FakeBackend):
    """The shared fake engine, loaded at once, whose jobs are :class:`ScriptedJob`; its load
    reports the sequences its jobs are running."""

    author: str
    token_delay: float = 0.005
    hold: bool = False
    # Seconds a job waits before the batcher admits it (its ``start``).
    admit_delay: float = 0.0
    running: int = 0
    # Set (from the edge's loop) once a held job wrote its first word.
    held: threading.Event = field(default_factory=threading.Event)
    figures: LoadSnapshot = SCRIPTED_FIGURES

    def __post_init__(self) -> None:
        self.may_start.set()

    def load(self) -> LoadSnapshot:
        return dataclasses.replace(
            super().load(),
            running_sequences=self.running,
            free_sequence_slots=self.figures.max_sequences - self.running,
        )

    def new_job(self, spec: JobSpec) -> ScriptedJob:
        return ScriptedJob(self, spec)


def edge_settings(name: str, dial: list[str], token: str = TOKEN, **extra: Any) -> EdgeSettings:
    return EdgeSettings(
        model="scripted.gguf",
        model_id="edge-scripted",
        name=name,
        dial_url=dial,
        api_token=token,
        dial_backoff_max=0.5,
        **extra,
    )


@contextlib.contextmanager
def running_edge(settings: EdgeSettings, engine: ScriptedEngine) -> Iterator[None]:
    """The edge agent's lifespan (engine, dialler) on a loop in a thread; no HTTP server."""
    app = create_app(settings, lambda _: ServedBackend(engine, name="scripted"))
    stop = threading.Event()
    failed: list[BaseException] = []

    async def live() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(live())
        except BaseException as exc:  # surfaced by the test thread
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True, name=f"edge-{settings.name}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the edge agent did not stop"
        if failed:
            raise failed[0]


def main(argv: list[str] | None = None) -> None:
    """One scripted edge as a process, dialling until it is killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dial", action="append", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--author", required=True)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args(argv)
    engine = ScriptedEngine(author=args.author, hold=args.hold)
    with running_edge(edge_settings(args.name, args.dial), engine):
        threading.Event().wait()


if __name__ == "__main__":
    main()
