"""Gateway overhead: PICE's ``pice-cloud`` pass-through vs LiteLLM proxy vs the upstream direct.

Three HTTP targets answer the same chat request from the same fast fake OpenAI upstream:

- ``direct``: the fake upstream itself (the floor);
- ``pice``: PICE's gateway (``pice gateway``, model ``pice-cloud``, router off, no edges, the
  cloud pointed at the fake);
- ``litellm``: LiteLLM's proxy (``litellm --config``, one worker) from its own venv
  (``make litellm-env`` builds ``.venv-litellm``; without it LiteLLM is skipped with a warning).

Pinning on a 2-core machine: the gateway under test gets core 1 to itself (PICE and LiteLLM
both run there, but never loaded at the same time: the rounds are interleaved, one target at a
time); the fake upstream and this load generator share core 0. Both are minimal asyncio code
(raw HTTP/1.1 over keep-alive connections, uvloop when installed) so they cost little, and they
cost the same for every target, so ``added = p50(target) - p50(direct)`` is the gateway's own
cost plus its extra hop. ``req/s`` at 16 in flight is bounded by the gateway's one core.

Scenarios: concurrency 1 (latency p50/p99 of the whole response) and concurrency 16 (req/s),
each non-streamed and streamed (the upstream sends ``--chunks`` content chunks, then a finish
chunk and ``[DONE]``). Each round runs every scenario against every target in turn; samples of
all rounds are pooled. Both gateways run with access logs off (log level warning).

Quiet machine, the published figures (docs/operations.md "Overhead"):
    make litellm-env
    python benchmarks/overhead.py --rounds 3 --requests 1000 --out benchmarks/results/overhead.json
Smoke test (PICE and direct only, seconds):
    python benchmarks/overhead.py --quick --targets direct,pice --out /tmp/overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO / ".venv-litellm"
TARGETS = ("direct", "pice", "litellm")
MODEL = {"direct": "fake-model", "pice": "pice-cloud", "litellm": "fake-model"}
PROMPT = [{"role": "user", "content": "Say hello."}]
# Both gateways check this key, as they would in production (LiteLLM refuses to start without).
API_KEY = "sk-overhead-" + "0123456789abcdef" * 4


# --- the fake upstream -----------------------------------------------------------------------


def _completion(words: list[str]) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(words)},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 8,
            "completion_tokens": len(words),
            "total_tokens": 8 + len(words),
        },
    }
    return json.dumps(body).encode()


def _stream_events(words: list[str]) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": words[0]}, None)]
    events += [chunk({"content": word}, None) for word in words[1:]]
    usage = {"prompt_tokens": 8, "completion_tokens": len(words), "total_tokens": 8 + len(words)}
    events.append(chunk({}, "stop", usage))
    events.append(b"data: [DONE]\n\n")
    # One HTTP/1.1 chunk per event, as a real server flushes each token.
    return [b"%x\r\n%s\r\n" % (len(event), event) for event in events] + [b"0\r\n\r\n"]


class FakeUpstream(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server: POST .../chat/completions answers a fixed completion."""

    def __init__(self, completion: bytes, stream: list[bytes]) -> None:
        self.completion = completion
        self.stream = stream
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not ``asyncio.Transport`` subclasses; they write all the same.
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            self._answer(head.split(" ", 2)[1], body)

    def _answer(self, path: str, body: bytes) -> None:
        assert self.transport is not None
        if not path.endswith("/chat/completions"):
            payload = b'{"object":"list","data":[]}'
            self.transport.write(_head(b"application/json", len(payload)) + payload)
            return
        if json.loads(body or b"{}").get("stream"):
            self.transport.write(_head(b"text/event-stream", None))
            for part in self.stream:
                self.transport.write(part)
        else:
            self.transport.write(_head(b"application/json", len(self.completion)) + self.completion)


def _head(content_type: bytes, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\n%s\r\n\r\n" % (content_type, framing)


async def serve_upstream(port: int, chunks: int) -> None:
    words = [f" word{i}" for i in range(chunks)]
    loop = asyncio.get_running_loop()
    completion, stream = _completion(words), _stream_events(words)
    server = await loop.create_server(
        lambda: FakeUpstream(completion, stream), "127.0.0.1", port, reuse_address=True
    )
    async with server:
        await server.serve_forever()


# --- the load generator ----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection reading whole responses (length or chunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        body = bytearray()
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return status, bytes(body)
            body += await self.reader.readexactly(size + 2)
            del body[-2:]

    def close(self) -> None:
        self.writer.close()


def request_bytes(port: int, model: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": model, "messages": PROMPT, "max_tokens": 64, "stream": stream}
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
        b"content-type: application/json\r\nauthorization: Bearer %s\r\n"
        b"content-length: %d\r\n\r\n%s" % (port, API_KEY.encode(), len(body), body)
    )


def check(status: int, body: bytes, stream: bool) -> None:
    if status != 200:
        raise RuntimeError(f"status {status}: {body[:300]!r}")
    if stream and not body.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"stream did not end with [DONE]: {body[-300:]!r}")
    if not stream and b'"choices"' not in body:
        raise RuntimeError(f"no choices: {body[:300]!r}")


async def run_load(
    port: int, raw: bytes, stream: bool, requests: int, concurrency: int
) -> dict[str, Any]:
    """``requests`` requests over ``concurrency`` connections; latencies in seconds."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors: list[str] = []
    remaining = requests

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                status, body = await connection.request(raw)
                check(status, body, stream)
            except Exception as exc:  # counted and reported, never hidden
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    wall = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return {"latencies": latencies, "wall_s": wall, "errors": errors}


# --- the processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(argv: list[str], core: int | None) -> list[str]:
    return (
        ["taskset", "-c", str(core), *argv]
        if core is not None and shutil.which("taskset")
        else argv
    )


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def wait_listening(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.5),
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not listen within {timeout:.0f} s")


@contextlib.contextmanager
def started(
    name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str], timeout: float
) -> Iterator[Server]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(name, port, process, log)
    try:
        wait_listening(server, timeout)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def pice_argv(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "pice_cli", "--log-level", "WARNING", "gateway",
            "--config", str(config), "--port", str(port)]  # fmt: skip


def pice_config(path: Path, upstream_port: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "cloud": {
                    "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                    "model": "fake-model",
                },
                "edges": [],
                "router": {"enabled": False},
                "api_keys": [API_KEY],
            }
        )
    )
    return path


def litellm_config(path: Path, upstream_port: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "fake-model",
                        "litellm_params": {
                            "model": "openai/fake-model",
                            "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                            "api_key": "sk-fake",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "drop_params": True},
                "general_settings": {"master_key": API_KEY},
            }
        )
    )
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children's threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the measurement -------------------------------------------------------------------------

SCENARIOS = (
    ("latency", 1, False),
    ("latency", 1, True),
    ("throughput", 16, False),
    ("throughput", 16, True),
)


def scenario_key(concurrency: int, stream: bool) -> str:
    return f"c{concurrency}-{'stream' if stream else 'json'}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for run in runs for x in run["latencies"]]
    done = len(latencies)
    wall = sum(run["wall_s"] for run in runs)
    return {
        "requests": done,
        "errors": sum(len(run["errors"]) for run in runs),
        "first_errors": [e for run in runs for e in run["errors"]][:3],
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "req_per_s": done / wall if wall else None,
        # The server's own CPU per request: steadier than wall times on a busy machine (for
        # ``direct`` it is the fake upstream's).
        "cpu_ms_per_request": 1000 * sum(run["cpu_s"] for run in runs) / done if done else None,
        "req_per_s_by_round": [len(r["latencies"]) / r["wall_s"] for r in runs if r["wall_s"]],
        "p50_ms_by_round": [
            1000 * statistics.median(r["latencies"]) for r in runs if r["latencies"]
        ],
    }


async def measure(
    ports: dict[str, int], pids: dict[str, int], rounds: int, requests: int, warmup: int
) -> dict[str, Any]:
    raw = {(t, s): request_bytes(p, MODEL[t], s) for t, p in ports.items() for s in (False, True)}
    for target, port in ports.items():
        print(f"warming up {target}", file=sys.stderr, flush=True)
        for stream in (False, True):
            outcome = await run_load(port, raw[target, stream], stream, warmup, 4)
            if outcome["errors"]:
                raise RuntimeError(f"{target} failed its warm-up: {outcome['errors'][0]}")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_index in range(rounds):
        for _kind, concurrency, stream in SCENARIOS:
            key = scenario_key(concurrency, stream)
            for target, port in ports.items():
                cpu_before = cpu_seconds(pids[target])
                outcome = await run_load(port, raw[target, stream], stream, requests, concurrency)
                outcome["cpu_s"] = cpu_seconds(pids[target]) - cpu_before
                runs.setdefault(key, {}).setdefault(target, []).append(outcome)
                rate = len(outcome["latencies"]) / outcome["wall_s"]
                print(
                    f"round {round_index + 1}/{rounds} {key:10} {target:8} {rate:8.0f} req/s"
                    f"  p50 {1000 * statistics.median(outcome['latencies'] or [0]):6.2f} ms"
                    f"  errors {len(outcome['errors'])}",
                    file=sys.stderr,
                    flush=True,
                )
    results: dict[str, Any] = {}
    for key, by_target in runs.items():
        results[key] = {target: summarise(target_runs) for target, target_runs in by_target.items()}
        direct = results[key].get("direct")
        for summary in results[key].values():
            if direct and direct["p50_ms"] is not None and summary["p50_ms"] is not None:
                summary["added_p50_ms"] = summary["p50_ms"] - direct["p50_ms"]
                # Each round against the direct p50 of the same round: the spread.
                summary["added_p50_ms_by_round"] = [
                    mine - floor
                    for mine, floor in zip(
                        summary["p50_ms_by_round"], direct["p50_ms_by_round"], strict=False
                    )
                ]
    return results


def table(results: dict[str, Any]) -> str:
    header = (
        "scenario",
        "target",
        "p50 ms",
        "p99 ms",
        "added p50",
        "req/s",
        "cpu ms/req",
        "errors",
    )
    lines = ["{:11} {:8} {:>8} {:>8} {:>10} {:>8} {:>10} {:>6}".format(*header)]
    for key, by_target in results.items():
        for target, s in by_target.items():
            added = s.get("added_p50_ms")
            shown = "" if added is None else f"{added:+.2f}"
            lines.append(
                f"{key:11} {target:8} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} "
                f"{shown:>10} {s['req_per_s']:8.0f} {s['cpu_ms_per_request']:10.3f}"
                f" {s['errors']:6d}"
            )
    ratios = []
    for key, by_target in results.items():
        if "pice" in by_target and "litellm" in by_target and key.startswith("c16"):
            pice, litellm = by_target["pice"], by_target["litellm"]
            ratio = pice["req_per_s"] / litellm["req_per_s"]
            by_round = [
                mine / theirs
                for mine, theirs in zip(
                    pice["req_per_s_by_round"], litellm["req_per_s_by_round"], strict=False
                )
            ]
            spread = ", ".join(f"{r:.1f}" for r in by_round)
            ratios.append(f"{key}: PICE/LiteLLM req/s {ratio:.1f}x (by round: {spread})")
    for key, by_target in results.items():
        rounds = by_target.get("pice", {}).get("added_p50_ms_by_round")
        if rounds and key.startswith("c1-"):
            spread = ", ".join(f"{r:+.2f}" for r in rounds)
            ratios.append(f"{key}: PICE added p50 by round (ms): {spread}")
    return "\n".join(lines + ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per target, scenario and round")
    parser.add_argument(
        "--warmup", type=int, default=200, help="per target and mode, before round 1"
    )
    parser.add_argument(
        "--chunks", type=int, default=20, help="content chunks of a streamed answer"
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of " + ",".join(TARGETS),
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round of 50 requests")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/overhead.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.warmup = 1, 50, 20
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets: {sorted(unknown)}")
    litellm = LITELLM_VENV / "bin" / "litellm"
    if "litellm" in targets and not litellm.exists():
        print(f"LiteLLM skipped: {litellm} is missing (make litellm-env)", file=sys.stderr)
        targets.remove("litellm")
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    upstream_core, gateway_core = (0, 1) if pin else (None, None)
    if pin:
        # The load generator shares core 0 with the fake upstream (module docstring).
        os.sched_setaffinity(0, {0})
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
        ),
    }
    env.pop("PICE_API_KEYS", None)
    with (
        tempfile.TemporaryDirectory(prefix="pice-overhead-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        upstream_port = free_port()
        upstream_argv = [
            sys.executable,
            __file__,
            "--serve-upstream",
            str(upstream_port),
            "--chunks",
            str(args.chunks),
        ]
        upstream = stack.enter_context(
            started(
                "upstream", pinned(upstream_argv, upstream_core), upstream_port, workdir, env, 30
            )
        )
        ports = {"direct": upstream_port}
        pids = {"direct": upstream.process.pid}
        if "pice" in targets:
            port = free_port()
            argv_pice = pice_argv(pice_config(workdir / "pice.json", upstream_port), port)
            pice = stack.enter_context(
                started("pice", pinned(argv_pice, gateway_core), port, workdir, env, 60)
            )
            ports["pice"], pids["pice"] = port, pice.process.pid
        if "litellm" in targets:
            port = free_port()
            config = litellm_config(workdir / "litellm.json", upstream_port)
            argv_litellm = [str(litellm), "--config", str(config), "--host", "127.0.0.1",
                            "--port", str(port), "--num_workers", "1"]  # fmt: skip
            litellm_env = {**env, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
            proxy = stack.enter_context(
                started(
                    "litellm", pinned(argv_litellm, gateway_core), port, workdir, litellm_env, 300
                )
            )
            # One worker: LiteLLM serves in this process (its CPU is read from it).
            ports["litellm"], pids["litellm"] = port, proxy.process.pid
        ports = {t: ports[t] for t in TARGETS if t in ports and (t == "direct" or t in targets)}
        print(f"targets {ports}; pinned: {pin}", file=sys.stderr, flush=True)
        try:
            results = asyncio.run(measure(ports, pids, args.rounds, args.requests, args.warmup))
        except Exception:
            for log in sorted(workdir.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-2000:]}", file=sys.stderr)
            raise

    report = {
        "config": {
            "rounds": args.rounds,
            "requests": args.requests,
            "warmup": args.warmup,
            "chunks": args.chunks,
            "pinning": "gateway on core 1; upstream and load generator on core 0"
            if pin
            else "none",
            "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    print(f"wrote {args.out}")
    errors = sum(s["errors"] for by_target in results.values() for s in by_target.values())
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve-upstream":
        chunks = int(sys.argv[sys.argv.index("--chunks") + 1]) if "--chunks" in sys.argv else 20
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_upstream(int(sys.argv[2]), chunks))
        sys.exit(0)
    sys.exit(main())
