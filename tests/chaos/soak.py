"""The soak: N concurrent streams for T seconds through a gateway process, fakes at token pace.

Every process is its own: the fake cloud, two fake edges (:mod:`tests.chaos.fake_server`) and
the gateway (``pice gateway``), so the gateway's resident memory and open descriptors, sampled
from ``/proc`` once a second, are the gateway's alone. Each of the N clients asks again as soon
as an answer ends, alternating between the progressive path (``pice``: a sketch from the cloud,
three points expanded on the edges) and the cloud relay (``pice-cloud``). An answer counts as an
error unless it is complete: status 200, no error event, ``[DONE]`` last, and (progressive) all
three points (from an edge, or from the cloud when the edges were busy). ``pice`` answered by
the cloud alone (every edge seen down at that moment, e.g. a load poll slower than its timeout on
a saturated machine) is counted as a fallback, not an error. Used by ``tests/chaos/test_soak.py``
(short) and ``benchmarks/soak.py`` (full).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from pice_gateway.settings import KEEPALIVE_EXPIRY_SECONDS
from tests.chaos.support import fake_process
from tests.support.processes import ServerProcess, free_port, pice_argv


@dataclass(frozen=True)
class SoakConfig:
    streams: int = 50
    seconds: float = 20.0
    # Realistic pacing: the cloud writes 40 tokens/s, each edge sequence 30 tokens/s.
    cloud_tokens_per_second: float = 40.0
    edge_tokens_per_second: float = 30.0
    # Answer lengths: the cloud's relayed answer, and each progressive point's body.
    cloud_answer_words: int = 80
    point_extra_words: int = 30
    sample_seconds: float = 1.0


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    active: int
    tokens: int  # content chunks received since the previous sample


@dataclass
class SoakResult:
    config: SoakConfig
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    error_examples: list[str] = field(default_factory=list)
    tokens: int = 0
    fds_before: int = 0
    fds_after: int = 0
    samples: list[Sample] = field(default_factory=list)

    def steady(self) -> list[Sample]:
        """Samples after the first fifth of the run (start-up and warm-up left out)."""
        start = self.config.seconds / 5
        return [s for s in self.samples if start <= s.t <= self.config.seconds]

    def summary(self) -> dict[str, Any]:
        steady = self.steady()
        fifth = max(1, len(steady) // 5)
        early, late = steady[:fifth], steady[-fifth:]
        rss = [s.rss_mb for s in steady]
        fds = [s.fds for s in steady]
        return {
            "streams": self.config.streams,
            "seconds": self.config.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "tokens_per_second": round(self.tokens / self.config.seconds, 1),
            "requests_per_second": round(self.requests / self.config.seconds, 2),
            "rss_mb_early": round(statistics.median(s.rss_mb for s in early), 1),
            "rss_mb_late": round(statistics.median(s.rss_mb for s in late), 1),
            "rss_mb_max": round(max(rss), 1),
            "fds_before": self.fds_before,
            "fds_steady_min": min(fds),
            "fds_steady_max": max(fds),
            "fds_after": self.fds_after,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "summary": self.summary(),
            "error_examples": self.error_examples,
            "samples": [asdict(s) for s in self.samples],
        }


def _proc_status(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and open descriptors of process ``pid``."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


# The stack: this many fake edges, polled for load this often (seconds).
EDGES = 2
POLL_INTERVAL = 0.5


@contextlib.contextmanager
def soak_stack(config: SoakConfig, log_dir: Path) -> Iterator[ServerProcess]:
    """The fake cloud, two fake edges and a gateway, each a process; yields the gateway."""
    cloud = fake_process(
        "cloud", log_dir, "cloud",
        "--cloud-token-delay", str(1 / config.cloud_tokens_per_second),
        "--cloud-answer-words", str(config.cloud_answer_words),
    )  # fmt: skip
    names = tuple(f"edge-{n}" for n in range(1, EDGES + 1))
    edge_args = (
        "--author", "edge",
        "--token-delay", str(1 / config.edge_tokens_per_second),
        "--extra-words", str(config.point_extra_words),
    )  # fmt: skip
    edges = [fake_process("edge", log_dir, name, "--name", name, *edge_args) for name in names]
    with contextlib.ExitStack() as stack:
        for server in (cloud, *edges):
            stack.enter_context(_running(server))
        settings = {
            "host": "127.0.0.1",
            "cloud": {"base_url": cloud.base_url + "/v1", "model": "cloud-model"},
            "edges": [{"name": n, "url": e.base_url} for n, e in zip(names, edges, strict=True)],
            "edge_client": {"poll_interval": POLL_INTERVAL},
            "router": {"enabled": False},
            # The soak looks for leaks at a steady concurrency, not for admission control
            # (tests/gateway/test_admission.py): every stream must be admitted.
            "admission": {"max_progressive_requests": max(64, config.streams)},
        }
        config_path = log_dir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(settings))
        port = free_port()
        argv = pice_argv(
            "--log-level", "WARNING", "gateway", "--config", str(config_path), "--port", str(port)
        )
        gateway = ServerProcess(list(argv), port, log_dir / "gateway.log", ready_path="/health")
        yield stack.enter_context(_running(gateway))


@contextlib.contextmanager
def _running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


class _Load:
    def __init__(self, base_url: str, config: SoakConfig, result: SoakResult) -> None:
        self.url = base_url + "/v1/chat/completions"
        self.config = config
        self.result = result
        self.active = 0
        self.tokens_since_sample = 0

    async def worker(self, client: httpx.AsyncClient, n: int, deadline: float) -> None:
        turn = n
        while time.monotonic() < deadline:
            model = "pice" if turn % 2 == 0 else "pice-cloud"
            turn += 1
            self.active += 1
            try:
                problem = await self.one(client, model)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                self.active -= 1
            self.result.requests += 1
            if problem is not None:
                self.result.errors += 1
                if len(self.result.error_examples) < 10:
                    self.result.error_examples.append(f"{model}: {problem}")

    async def one(self, client: httpx.AsyncClient, model: str) -> str | None:
        body = {
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": "How to stay healthy?"}],
        }
        text: list[str] = []
        last = ""
        report: dict[str, Any] = {}
        async with client.stream("POST", self.url, json=body) as response:
            if response.status_code != 200:
                return f"status {response.status_code}: {(await response.aread())[:200]!r}"
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                last = line[len("data: ") :]
                if last == "[DONE]":
                    continue
                payload = json.loads(last)
                if "error" in payload:
                    return f"error event: {payload['error']}"
                report = payload.get("pice") or report
                for choice in payload.get("choices") or []:
                    if content := (choice.get("delta") or {}).get("content"):
                        text.append(content)
                        self.result.tokens += 1
                        self.tokens_since_sample += 1
        if last != "[DONE]":
            return "the stream ended without [DONE]"
        answer = "".join(text)
        if model == "pice" and report.get("mode") == "cloud":
            self.result.fallbacks += 1
        elif model == "pice" and (answer.count("\n") != 3 or "**Gamma point**:" not in answer):
            return f"incomplete answer: {answer[:200]!r}"
        elif model == "pice-cloud" and len(answer.split()) != self.config.cloud_answer_words:
            return f"incomplete answer: {answer[-200:]!r}"
        return None

    async def sample(self, pid: int, started: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss, fds = _proc_status(pid)
            self.result.samples.append(
                Sample(
                    t=round(time.monotonic() - started, 2),
                    rss_mb=round(rss, 1),
                    fds=fds,
                    active=self.active,
                    tokens=self.tokens_since_sample,
                )
            )
            self.tokens_since_sample = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sample_seconds)


async def run_load(gateway: ServerProcess, config: SoakConfig) -> SoakResult:
    """Drive ``config.streams`` concurrent streams at ``gateway`` for ``config.seconds``."""
    assert gateway.proc is not None
    pid = gateway.proc.pid
    result = SoakResult(config)
    load = _Load(gateway.base_url, config, result)
    limits = httpx.Limits(max_connections=config.streams + 8, max_keepalive_connections=0)
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        # One answer first, so lazily made things (pools, imports) are in the baseline.
        await load.one(client, "pice")
        await load.one(client, "pice-cloud")
        await asyncio.sleep(1.0)
        result.fds_before = _proc_status(pid)[1]
        started = time.monotonic()
        stop = asyncio.Event()
        sampler = asyncio.create_task(load.sample(pid, started, stop))
        deadline = started + config.seconds
        await asyncio.gather(*(load.worker(client, n, deadline) for n in range(config.streams)))
        # Connections wind down: the clients' at once (keep-alive is off here), the gateway's
        # idle pooled connections to its upstreams once their keep-alive expired (aiohttp's
        # pool sweeps idle connections every expiry period, so one can live up to two). Then
        # the descriptors must be back.
        await asyncio.sleep(2 * KEEPALIVE_EXPIRY_SECONDS + 2.0)
        stop.set()
        await sampler
    result.fds_after = _proc_status(pid)[1]
    return result


def soak(config: SoakConfig, log_dir: Path) -> SoakResult:
    """Start the stack, run the load, stop the stack."""
    with soak_stack(config, log_dir) as gateway:
        return asyncio.run(run_load(gateway, config))
