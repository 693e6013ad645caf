"""The edge batching benchmark: one job of N points vs the same points one at a time, and
8 concurrent chat completions vs 8 sequential ones against a real ``pice edge serve``.

A third pair of rows is the hardware's own bound: raw ``llama_decode`` steps of 8 sequences vs
1, no engine around them, so the engine's figures can be read against what the CPU's kernels
give at all.

``--lora ADAPTER.gguf`` runs every part with a LoRA adapter applied, as ``pice edge serve
--lora`` would (``benchmarks/lora_speed.py`` compares the two side by side).

Run it as ``pice edge bench`` or ``python benchmarks/edge_batching.py``. Heavy imports happen
inside the functions; the chat part speaks HTTP with the standard library so that an
edge-only install (no httpx) can run it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pice.command import pice_argv

if TYPE_CHECKING:
    from edge_agent.engine.engine import EngineConfig

QUESTION = "How can a small city reduce traffic congestion and make its streets safer?"
SKETCH = (
    "Expand public transit",
    "Build protected bike lanes",
    "Adjust traffic signal timing",
    "Introduce congestion pricing",
    "Improve sidewalks and crossings",
    "Encourage remote work",
    "Manage parking better",
    "Lower speed limits",
    "Support car sharing",
    "Plan mixed-use neighbourhoods",
    "Use real-time traffic data",
    "Stagger school and work hours",
    "Promote carpooling",
    "Redesign dangerous intersections",
    "Educate drivers and cyclists",
    "Enforce traffic rules consistently",
)
CHAT_QUESTIONS = (
    "Why is the sky blue?",
    "What does a compiler do?",
    "How do vaccines train the immune system?",
    "Why do cats purr?",
    "What causes ocean tides?",
    "How does a refrigerator keep food cold?",
    "What is the difference between weather and climate?",
    "Why do leaves change colour in autumn?",
)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_agent.settings import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or path")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument(
        "--points", default="1,4,8,16", help="point counts to compare (default 1,4,8,16)"
    )
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per point/chat")
    parser.add_argument("--chats", type=int, default=8, help="concurrent chat requests (0 = skip)")
    parser.add_argument(
        "--server-url", help="benchmark chats against this running server instead of starting one"
    )
    parser.add_argument(
        "--raw-sequences",
        type=int,
        default=8,
        help="sequences in the raw llama_decode bound (0 = skip; default 8)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="chat and raw-decode comparisons are repeated this many times, the two modes "
        "alternating, so that a noisy machine slows both alike (default 3)",
    )
    parser.add_argument(
        "--lora", type=Path, help="apply this LoRA adapter GGUF (pice tune export) everywhere"
    )
    parser.add_argument(
        "--lora-scale", dest="lora_scale", type=float, default=1.0, help="adapter scale (1.0)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--png", type=Path, help="draw a chart here (needs matplotlib)")


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to benchmark with: the file and the scale ``--lora-scale`` gives it."""

    path: Path
    scale: float = 1.0

    def serve_args(self) -> tuple[str, ...]:
        """The same adapter for ``pice edge serve``."""
        return ("--lora", str(self.path), "--lora-scale", str(self.scale))


def adapter_from_args(args: argparse.Namespace) -> Adapter | None:
    """``--lora``/``--lora-scale``, checked before any model is loaded (minutes, on a Jetson)."""
    from pice.errors import ModelProvisioningError

    lora: Path | None = getattr(args, "lora", None)
    if lora is None:
        return None
    if not lora.is_file():
        raise ModelProvisioningError(f"LoRA adapter not found: {lora}")
    return Adapter(lora, float(args.lora_scale))


@dataclass
class Row:
    """One measured configuration."""

    scenario: str  # "expand" or "chat"
    size: int  # points, or chat requests
    mode: str  # "batched"/"one-at-a-time", or "concurrent"/"sequential"
    tokens: int
    seconds: float
    ttft_ms_mean: float
    ttft_ms_max: float
    # For a batched/concurrent row measured in rounds: each round's speed-up over its baseline.
    round_speedups: tuple[float, ...] = ()

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


# -- expansion: in-process engine ----------------------------------------------------------


async def run_job(
    engine: Any,
    prefix: str,
    add_special: bool,
    points: Sequence[int],
    max_tokens: int,
    t0: float,
    *,
    stops: bool = True,
) -> tuple[int, list[float]]:
    """Run one job over ``points``; returns tokens and each point's TTFT from ``t0`` (ms).

    ``stops=False`` leaves out the points' stop strings, so every point runs to ``max_tokens``
    unless the model ends it: two models then decode (nearly) the same number of tokens.
    """
    from edge_agent.engine import (
        JobDone,
        JobFailed,
        JobSpec,
        SamplingParams,
        SequenceSpec,
        TokenDelta,
    )
    from edge_agent.prompts import DEFAULT_STOP, point_stops, point_suffix

    seqs = tuple(
        SequenceSpec(
            point_suffix(p, SKETCH[p]),
            SamplingParams(
                max_tokens=max_tokens, stop=point_stops(p, DEFAULT_STOP) if stops else ()
            ),
        )
        for p in points
    )
    first: dict[int, float] = {}
    tokens = 0
    async with engine.submit(JobSpec(prefix, seqs, add_special=add_special)) as job:
        async for event in job:
            if isinstance(event, TokenDelta) and event.seq not in first:
                first[event.seq] = (time.monotonic() - t0) * 1000.0
            elif isinstance(event, JobDone):
                tokens = event.completion_tokens
            elif isinstance(event, JobFailed):
                raise event.error
    return tokens, [first.get(i, float("nan")) for i in range(len(points))]


async def _expand_rows(
    engine: Any, sizes: Sequence[int], max_tokens: int, out: TextIO
) -> list[Row]:
    from edge_agent.prompts import expansion_messages

    prompt = engine.chat.render(expansion_messages(QUESTION, SKETCH))
    rows: list[Row] = []
    await run_job(engine, prompt.text, prompt.add_special, [0], 4, time.monotonic())  # warm-up
    for n in sizes:
        points = list(range(n))
        t0 = time.monotonic()
        tokens, ttfts = await run_job(
            engine, prompt.text, prompt.add_special, points, max_tokens, t0
        )
        rows.append(_row("expand", n, "batched", tokens, time.monotonic() - t0, ttfts))
        _say(out, f"  expand {n:>2} points  batched       {rows[-1].tokens_per_second:6.1f} tok/s")
        t0 = time.monotonic()
        total, all_ttfts = 0, []
        for p in points:
            tokens, ttfts = await run_job(
                engine, prompt.text, prompt.add_special, [p], max_tokens, t0
            )
            total += tokens
            all_ttfts += ttfts
        rows.append(_row("expand", n, "one-at-a-time", total, time.monotonic() - t0, all_ttfts))
        _say(out, f"  expand {n:>2} points  one-at-a-time {rows[-1].tokens_per_second:6.1f} tok/s")
    return rows


# -- the bound: raw llama_decode steps, no engine ----------------------------------------------


class RawDecoder:
    """Bare ``llama_decode`` steps over the expansion prompt: no engine, no HTTP, greedy argmax.

    The hardware's bound for batching: what k sequences per step give against 1.
    """

    def __init__(
        self,
        path: Path,
        threads: int,
        max_sequences: int,
        *,
        extra_buffers: bool = True,
        adapter: Adapter | None = None,
    ) -> None:
        from edge_agent.engine.chat_template import ChatRenderer
        from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel, TokenBatch
        from edge_agent.prompts import expansion_messages

        self._model = LlamaModel(path, extra_buffers=extra_buffers)
        self._ctx = LlamaContext(self._model, ContextConfig(4096, 512, max_sequences, threads))
        if adapter is not None:
            self._ctx.set_adapter(self._model.load_adapter(adapter.path), adapter.scale)
        # Prefill speed of the last seconds() call's shared prompt, tokens/s.
        self.prefill_rate = 0.0
        self._batch = TokenBatch(512, max_sequences)
        renderer = ChatRenderer.from_model(self._model)
        prompt = renderer.render(expansion_messages(QUESTION, SKETCH[:8]))
        self._prefix = self._model.tokenize(
            prompt.text, add_special=prompt.add_special, parse_special=True
        )

    @property
    def prefix_tokens(self) -> int:
        """Tokens of the shared prompt each :meth:`seconds` call prefills."""
        return len(self._prefix)

    def seconds(self, sequences: int, steps: int) -> float:
        """Wall time of ``steps`` steps of ``sequences`` sequences after the shared prompt."""
        import numpy as np

        ctx, batch, prefix = self._ctx, self._batch, self._prefix
        ctx.clear()
        batch.clear()
        ids = tuple(range(sequences))
        for pos, token in enumerate(prefix):
            batch.add(token, pos, ids, logits=pos == len(prefix) - 1)
        t0 = time.monotonic()
        if ctx.decode(batch) != 0:
            raise RuntimeError("llama_decode failed on the prefix")
        self.prefill_rate = len(prefix) / (time.monotonic() - t0)
        last = [int(np.argmax(ctx.logits(batch.n_tokens - 1)))] * sequences
        t0 = time.monotonic()
        for step in range(steps):
            batch.clear()
            for seq in range(sequences):
                batch.add(last[seq], len(prefix) + step, (seq,), logits=True)
            if ctx.decode(batch) != 0:
                raise RuntimeError("llama_decode failed")
            last = [int(np.argmax(ctx.logits(seq))) for seq in range(sequences)]
        return time.monotonic() - t0

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()
        self._model.close()


def run_raw(
    model: str,
    threads: int,
    sequences: int,
    steps: int,
    out: TextIO,
    rounds: int = 1,
    adapter: Adapter | None = None,
) -> list[Row]:
    """Greedy decode ``steps`` tokens for ``sequences`` sequences per step, then for 1.

    Repeated ``rounds`` times, alternating; the rows hold the sums over all rounds.
    """
    from pice.models.registry import resolve_model

    path = resolve_model(model, progress=False).path
    decoder = RawDecoder(path, threads, max(sequences, 1), adapter=adapter)
    many: list[float] = []
    one: list[float] = []
    try:
        for r in range(rounds):
            many.append(decoder.seconds(sequences, steps))
            one.append(decoder.seconds(1, steps))
            _say(
                out,
                f"  raw decode round {r + 1}: {sequences} sequences/step "
                f"{steps * sequences / many[-1]:6.1f} tok/s, 1 sequence {steps / one[-1]:6.1f} "
                f"tok/s",
            )
    finally:
        decoder.close()
    speedups = tuple(sequences * o / m for m, o in zip(many, one, strict=True))
    return [
        _row(
            "raw-decode",
            sequences,
            "batched",
            steps * sequences * rounds,
            sum(many),
            [],
            round_speedups=speedups,
        ),
        _row("raw-decode", sequences, "one-at-a-time", steps * rounds, sum(one), []),
    ]


def _row(
    scenario: str,
    size: int,
    mode: str,
    tokens: int,
    seconds: float,
    ttfts: Sequence[float],
    round_speedups: tuple[float, ...] = (),
) -> Row:
    valid = [t for t in ttfts if t == t] or [0.0]
    return Row(
        scenario,
        size,
        mode,
        tokens,
        seconds,
        statistics.fmean(valid),
        max(valid),
        round_speedups,
    )


def expand_config(threads: int, sizes: Sequence[int], adapter: Adapter | None) -> EngineConfig:
    """The engine the expansion rows run on."""
    from edge_agent.engine.engine import EngineConfig

    # No prefix cache: one-at-a-time would reuse the prefix too, and this measures batching.
    return EngineConfig(
        threads=threads,
        max_sequences=max(16, *sizes),
        prefix_cache_slots=0,
        lora=adapter.path if adapter else None,
        lora_scale=adapter.scale if adapter else 1.0,
    )


def run_expand(
    model: str,
    threads: int,
    sizes: Sequence[int],
    max_tokens: int,
    out: TextIO,
    adapter: Adapter | None = None,
) -> list[Row]:
    from edge_agent.engine.engine import Engine
    from pice.models.registry import resolve_model

    path = resolve_model(model, progress=False).path
    engine = Engine(path, expand_config(threads, sizes, adapter))
    engine.start()
    try:
        return asyncio.run(_expand_rows(engine, sizes, max_tokens, out))
    finally:
        engine.stop()


# -- chat: a real server over HTTP ------------------------------------------------------------


def _chat_once(
    base_url: str, model: str, question: str, max_tokens: int, t0: float
) -> tuple[int, float]:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    request = urllib.request.Request(
        base_url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    ttft, tokens = float("nan"), 0
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content") and ttft != ttft:
                    ttft = (time.monotonic() - t0) * 1000.0
    return tokens, ttft


def _model_id(base_url: str) -> str:
    with urllib.request.urlopen(base_url + "/v1/models", timeout=10) as response:
        return str(json.load(response)["data"][0]["id"])


@dataclass(frozen=True)
class _ChatRun:
    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def run_chats(
    base_url: str, count: int, max_tokens: int, out: TextIO, rounds: int = 1
) -> list[Row]:
    """``count`` concurrent chats vs the same chats one after another, ``rounds`` times.

    The modes alternate within each round; the rows hold the sums over all rounds.
    """
    model = _model_id(base_url)
    questions = [CHAT_QUESTIONS[i % len(CHAT_QUESTIONS)] for i in range(count)]
    _chat_once(base_url, model, questions[0], 4, time.monotonic())  # warm-up

    def measure(run: Callable[[float], list[tuple[int, float]]]) -> _ChatRun:
        t0 = time.monotonic()
        results = run(t0)
        return _ChatRun(sum(r[0] for r in results), time.monotonic() - t0, [r[1] for r in results])

    def concurrently(t0: float) -> list[tuple[int, float]]:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(
                pool.map(lambda q: _chat_once(base_url, model, q, max_tokens, t0), questions)
            )

    def one_by_one(t0: float) -> list[tuple[int, float]]:
        return [_chat_once(base_url, model, q, max_tokens, t0) for q in questions]

    together: list[_ChatRun] = []
    apart: list[_ChatRun] = []
    for r in range(rounds):
        together.append(measure(concurrently))
        apart.append(measure(one_by_one))
        _say(
            out,
            f"  chat round {r + 1}: {count} concurrent {together[-1].rate:6.1f} tok/s, "
            f"sequential {apart[-1].rate:6.1f} tok/s",
        )
    gains = tuple(c.rate / a.rate for c, a in zip(together, apart, strict=True) if a.rate > 0)

    def total(mode: str, runs: list[_ChatRun], speedups: tuple[float, ...]) -> Row:
        tokens, seconds = sum(r.tokens for r in runs), sum(r.seconds for r in runs)
        ttfts = [t for r in runs for t in r.ttfts]
        return _row("chat", count, mode, tokens, seconds, ttfts, round_speedups=speedups)

    return [total("concurrent", together, gains), total("sequential", apart, ())]


def serve_argv(model: str, port: int, threads: int, adapter: Adapter | None) -> tuple[str, ...]:
    """The ``pice edge serve`` command line the chat part starts."""
    return pice_argv(
        *("edge", "serve", "--model", model, "--port", str(port), "--threads", str(threads)),
        *(adapter.serve_args() if adapter else ()),
    )


def _start_server(
    model: str, threads: int, adapter: Adapter | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        serve_argv(model, port, threads, adapter),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the edge server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/ready", timeout=2) as response:
                if response.status == 200:
                    return proc, base_url
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise TimeoutError("the edge server did not become ready")


# -- report -----------------------------------------------------------------------------------


def speedups(rows: Sequence[Row]) -> dict[str, float]:
    by = {(r.scenario, r.size, r.mode): r for r in rows}
    result: dict[str, float] = {}
    for r in rows:
        base_mode = {"batched": "one-at-a-time", "concurrent": "sequential"}.get(r.mode)
        base = by.get((r.scenario, r.size, base_mode)) if base_mode else None
        if base and base.tokens_per_second > 0:
            result[f"{r.scenario}-{r.size}"] = r.tokens_per_second / base.tokens_per_second
    return result


def table(rows: Sequence[Row]) -> str:
    ratio = speedups(rows)
    lines = [
        "| scenario | size | mode | tokens | seconds | tok/s | mean TTFT ms | max TTFT ms "
        "| speed-up | per round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = ratio.get(f"{r.scenario}-{r.size}") if r.mode in ("batched", "concurrent") else None
        per_round = " ".join(f"{g:.2f}x" for g in r.round_speedups)
        lines.append(
            f"| {r.scenario} | {r.size} | {r.mode} | {r.tokens} | {r.seconds:.2f} | "
            f"{r.tokens_per_second:.1f} | {r.ttft_ms_mean:.0f} | {r.ttft_ms_max:.0f} | "
            f"{'' if gain is None else f'{gain:.2f}x'} | {per_round} |"
        )
    return "\n".join(lines)


def draw(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expand = [r for r in rows if r.scenario == "expand"]
    sizes = sorted({r.size for r in expand})
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in ("batched", "one-at-a-time"):
        ys = [
            next(r.tokens_per_second for r in expand if r.size == n and r.mode == mode)
            for n in sizes
        ]
        ax.plot(sizes, ys, marker="o", label=mode)
    ax.set_xlabel("points expanded")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_title("Edge expansion: one batched job vs one point at a time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_from_args(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    sizes = [int(s) for s in str(args.points).split(",") if s]
    adapter = adapter_from_args(args)
    with_adapter = f" lora={adapter.path} scale={adapter.scale}" if adapter else ""
    _say(out, f"edge batching benchmark: model={args.model} threads={args.threads}{with_adapter}")
    rows = run_expand(args.model, args.threads, sizes, args.max_tokens, out, adapter)
    rounds = max(1, args.rounds)
    if args.raw_sequences > 0:
        rows += run_raw(
            args.model, args.threads, args.raw_sequences, args.max_tokens, out, rounds, adapter
        )
    if args.chats > 0:
        if args.server_url:
            # A running server serves whatever adapter it was started with; say which it is.
            if adapter:
                _say(out, "  chats: --server-url given, the server's own adapter applies")
            rows += run_chats(args.server_url.rstrip("/"), args.chats, args.max_tokens, out, rounds)
        else:
            proc, base_url = _start_server(args.model, args.threads, adapter)
            try:
                rows += run_chats(base_url, args.chats, args.max_tokens, out, rounds)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    _say(out, "")
    _say(out, table(rows))
    if args.out:
        payload = {
            "model": args.model,
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "adapter": ({"path": str(adapter.path), "scale": adapter.scale} if adapter else None),
            "rows": [asdict(r) | {"tokens_per_second": r.tokens_per_second} for r in rows],
            "speedups": speedups(rows),
        }
        args.out.write_text(json.dumps(payload, indent=2))
    if args.png:
        draw(rows, args.png)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_bench_arguments(parser)
    return run_from_args(parser.parse_args(argv))
