"""The engine: one model, one batcher on a dedicated thread, asyncio handles for callers.

Callers on the event loop :meth:`Engine.submit` a job and iterate its :class:`JobHandle`.
The engine thread spends its time inside ``llama_decode`` (ctypes releases the GIL there), and
hands events back to the loop once per step: everything the batcher emitted while it
sampled goes over in one ``loop.call_soon_threadsafe`` when the step ends. The loop then wakes
once per step rather than once per token, and does its work while the engine thread is inside
the next ``llama_decode`` instead of contending with it for the GIL mid-sampling.

Cancellation: leaving the handle's ``async with`` block (the client disconnected, the handler
task was cancelled) marks the job cancelled and wakes the engine thread; at its next step the
batcher drops the job's sequences from the batch and frees their KV cells, and a job still
waiting in the queue is removed from it. Nothing else needs to happen for a client that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edge_agent.engine.admission import CellBudget
from edge_agent.engine.batcher import Batcher
from edge_agent.engine.chat_template import ChatRenderer
from edge_agent.engine.job import JobState, build_job
from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel, system_info
from edge_agent.engine.sampling import Sampler, check_params
from edge_agent.engine.stats import LoadSnapshot
from edge_agent.engine.types import EngineEvent, JobDone, JobFailed, JobSpec
from edge_agent.engine.warmup import warm_up
from pice.errors import ModelNotFoundError, PiceError, ServiceUnavailableError

logger = logging.getLogger(__name__)

# How often an idle engine thread wakes to refresh its load snapshot (decode rate decays).
_IDLE_WAKE_SECONDS = 1.0


@dataclass(frozen=True)
class NamedAdapter:
    """A LoRA adapter a job may ask for by name (``pice edge serve --lora-module``)."""

    name: str
    path: Path
    scale: float = 1.0


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int = 4096
    n_batch: int = 512
    max_sequences: int = 16
    threads: int = 2
    # Recent prompt prefixes kept in the KV cache for later jobs (0 turns the cache off).
    prefix_cache_slots: int = 4
    # Use llama.cpp's AMX weight buffers where the build has them (they crash: engine/cpu.py).
    allow_amx: bool = False
    # False: load without any extra weight buffer (no repacked kernels), see engine/cpu.py.
    extra_buffers: bool = True
    # Layers offloaded to the GPU in a GPU build of llama.cpp (-1 = all, 0 = none).
    n_gpu_layers: int = 0
    # Sequences in the batched warm-up decode that runs before the engine reports ready.
    warmup_sequences: int = 4
    # A llama.cpp LoRA adapter GGUF applied to every decode, at this scale.
    lora: Path | None = None
    lora_scale: float = 1.0
    # Adapters a job selects by name (``JobSpec.adapter``), added to ``lora`` for its decodes.
    lora_modules: tuple[NamedAdapter, ...] = ()


class JobHandle:
    """A submitted job: iterate its events; leaving ``async with`` cancels what still runs."""

    def __init__(self, engine: Engine, state: JobState, queue: asyncio.Queue[EngineEvent]) -> None:
        self._engine = engine
        self._state = state
        self._queue = queue
        self._ended = False

    @property
    def job_id(self) -> str:
        return self._state.job_id

    @property
    def prompt_tokens(self) -> int:
        """The shared prefix once plus every suffix."""
        return self._state.cost.prompt_tokens

    @property
    def prefix_tokens(self) -> int:
        return self._state.cost.prefix_tokens

    @property
    def max_tokens(self) -> tuple[int, ...]:
        """Per sequence, after clamping to the context."""
        return self._state.cost.max_tokens

    def cancel(self) -> None:
        if not self._ended:
            self._state.cancelled = True
            self._engine._wake()

    async def __aenter__(self) -> JobHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __aiter__(self) -> AsyncIterator[EngineEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[EngineEvent]:
        while not self._ended:
            event = await self._queue.get()
            if isinstance(event, JobDone | JobFailed):
                self._ended = True
            yield event


class Engine:
    """Loads a GGUF model and runs continuous batching over it on its own thread."""

    def __init__(self, model_path: Path, config: EngineConfig) -> None:
        self.model_path = model_path
        self.config = config
        self._model: LlamaModel | None = None
        self._ctx: LlamaContext | None = None
        self._batcher: Batcher | None = None
        self._renderer: ChatRenderer | None = None
        self._cond = threading.Condition()
        self._inbox: deque[JobState] = deque()
        # Events emitted on the engine thread, delivered by _flush (engine thread only).
        self._outbox: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Queue[EngineEvent], EngineEvent]
        ] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._snapshot = self._empty_snapshot(ready=False)
        self._adapter_names = frozenset(m.name for m in config.lora_modules)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Load the model and start the engine thread (blocking: call it off the loop)."""
        started = time.monotonic()
        model = LlamaModel(
            self.model_path,
            allow_amx=self.config.allow_amx,
            extra_buffers=self.config.extra_buffers,
            n_gpu_layers=self.config.n_gpu_layers,
        )
        ctx = LlamaContext(
            model,
            ContextConfig(
                n_ctx=self.config.n_ctx,
                n_batch=self.config.n_batch,
                n_seq_max=self.config.max_sequences + self.config.prefix_cache_slots,
                n_threads=self.config.threads,
            ),
        )
        if self.config.lora is not None:
            # Applied before the warm-up, so the warm-up exercises the adapted graph.
            ctx.set_adapter(model.load_adapter(self.config.lora), self.config.lora_scale)
        for module in self.config.lora_modules:
            # Loaded now, so a missing or mismatched adapter fails the start (and /ready).
            ctx.add_named_adapter(module.name, model.load_adapter(module.path), module.scale)
        self._model, self._ctx = model, ctx
        self._renderer = ChatRenderer.from_model(model)
        logger.info("llama.cpp: %s", system_info())
        warmup = warm_up(self._new_batcher(ctx), self.config.warmup_sequences)
        for module in self.config.lora_modules:
            # One short sequence each: the adapted graph runs once before the first request.
            ctx.clear()
            warm_up(self._new_batcher(ctx), 1, max_tokens=2, adapter=module.name)
        ctx.clear()  # the warm-up leaves nothing behind: fresh cache, fresh counters
        self._batcher = self._new_batcher(ctx)
        self._thread = threading.Thread(target=self._run, name="edge-engine", daemon=True)
        self._thread.start()
        logger.info(
            "Loaded %s in %.1fs (n_ctx=%d, max_sequences=%d, threads=%d; warm-up: %s)",
            self.model_path.name,
            time.monotonic() - started,
            ctx.n_ctx,
            self.config.max_sequences,
            self.config.threads,
            warmup,
        )

    def _new_batcher(self, ctx: LlamaContext) -> Batcher:
        first_cache_id = self.config.max_sequences
        return Batcher(
            ctx,
            CellBudget(ctx.n_ctx, self.config.max_sequences),
            self.config.n_batch,
            cache_seq_ids=range(first_cache_id, first_cache_id + self.config.prefix_cache_slots),
            new_sampler=functools.partial(
                Sampler, n_vocab=ctx.model.n_vocab, vocab=ctx.model.vocab
            ),
        )

    def stop(self) -> None:
        """Stop the thread, fail what is still running, free the model."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._batcher is not None:
            self._batcher.batch.close()
        if self._ctx is not None:
            self._ctx.close()
        if self._model is not None:
            self._model.close()
        self._snapshot = self._empty_snapshot(ready=False)

    @property
    def ready(self) -> bool:
        return self._snapshot.ready

    @property
    def chat(self) -> ChatRenderer:
        if self._renderer is None:
            raise ServiceUnavailableError("The model is still loading.")
        return self._renderer

    def load(self) -> LoadSnapshot:
        return self._snapshot

    # -- submitting work ----------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobHandle:
        """Queue a job; call on the event loop that will consume its events.

        Tokenises here, so a job that can never fit is refused before any byte is sent
        (ContextOverflowError); ``max_tokens`` is clamped when only the prompt fits.
        """
        model, batcher = self._model, self._batcher
        if model is None or batcher is None or self._stopping:
            raise ServiceUnavailableError("The model is not loaded.", retry_after=2)
        if spec.adapter is not None and spec.adapter not in self._adapter_names:
            raise ModelNotFoundError(spec.adapter)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()

        def emit(event: EngineEvent) -> None:  # called on the engine thread only
            self._outbox.append((loop, queue, event))

        check_params((s.params for s in spec.sequences), vocab=model.vocab, n_vocab=model.n_vocab)
        state = build_job(model, batcher.budget, spec, emit)
        with self._cond:
            self._inbox.append(state)
            self._cond.notify()
        return JobHandle(self, state, queue)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        batcher = self._batcher
        assert batcher is not None
        self._publish(batcher)
        try:
            while True:
                with self._cond:
                    while self._inbox:
                        batcher.enqueue(self._inbox.popleft())
                    if self._stopping:
                        break
                    if not batcher.busy:
                        self._cond.wait(timeout=_IDLE_WAKE_SECONDS)
                        self._publish(batcher)
                        continue
                batcher.reap_cancelled()
                batcher.admit()
                # Publish before the (long) decode too, so freed capacity shows at once.
                self._publish(batcher)
                self._flush()
                worked = batcher.step()
                self._publish(batcher)
                self._flush()
                if not worked:  # nothing runnable yet: do not spin
                    with self._cond:
                        self._cond.wait(timeout=0.05)
        except Exception:
            logger.exception("The engine thread crashed")
            batcher.fail_all(PiceError("The edge engine stopped unexpectedly."))
            raise
        finally:
            batcher.fail_all(ServiceUnavailableError("The edge agent is shutting down."))
            self._flush()
            self._publish(batcher, ready=False)

    def _flush(self) -> None:
        """Deliver the emitted events: one ``call_soon_threadsafe`` per consuming loop."""
        if not self._outbox:
            return
        batches: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[EngineEvent], EngineEvent]]
        ] = {}
        for loop, queue, event in self._outbox:
            batches.setdefault(loop, []).append((queue, event))
        self._outbox.clear()
        for loop, batch in batches.items():
            # A closed loop raises RuntimeError: nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, batch)

    def _publish(self, batcher: Batcher, *, ready: bool = True) -> None:
        budget, counters = batcher.budget, batcher.counters
        now = time.monotonic()
        self._snapshot = LoadSnapshot(
            ready=ready,
            running_sequences=batcher.running_sequences(),
            queued_sequences=batcher.queued_sequences(),
            queued_jobs=len(batcher.waiting),
            max_sequences=budget.max_sequences,
            free_sequence_slots=budget.free_slots,
            kv_cells_total=budget.total_cells,
            # Cached prefixes give their cells up on demand: they are not load.
            kv_cells_reserved=budget.reserved_cells - batcher.cache.cells,
            decode_tokens_per_second=batcher.throughput.rate(now),
            decode_batch_mean=batcher.throughput.batch_mean(now),
            threads=self.config.threads,
            tokens_generated=counters.tokens_generated,
            prefill_tokens=counters.prefill_tokens,
            jobs=counters.jobs,
            cancellations=counters.cancellations,
            prefix_cache_entries=len(batcher.cache.entries),
            prefix_cache_cells=batcher.cache.cells,
            prefix_cache_hits=batcher.cache.stats.hits,
            prefix_cache_reused_tokens=batcher.cache.stats.reused_tokens,
        )

    def _empty_snapshot(self, *, ready: bool) -> LoadSnapshot:
        return LoadSnapshot(
            ready=ready,
            running_sequences=0,
            queued_sequences=0,
            queued_jobs=0,
            max_sequences=self.config.max_sequences,
            free_sequence_slots=self.config.max_sequences,
            kv_cells_total=self.config.n_ctx,
            kv_cells_reserved=0,
            decode_tokens_per_second=0.0,
            threads=self.config.threads,
            tokens_generated=0,
            prefill_tokens=0,
            jobs=0,
            cancellations=0,
            prefix_cache_entries=0,
            prefix_cache_cells=0,
            prefix_cache_hits=0,
            prefix_cache_reused_tokens=0,
        )


def _deliver(batch: list[tuple[asyncio.Queue[EngineEvent], EngineEvent]]) -> None:
    for queue, event in batch:
        queue.put_nowait(event)
