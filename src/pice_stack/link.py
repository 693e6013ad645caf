"""A user-space network link: a TCP proxy that adds one-way delay, jitter and a bandwidth cap.

The kernel's netem qdisc is not available on the testbed machines, and no maintained link
emulator installs from the registries the project uses (Toxiproxy is a Go server, packaged by
neither Debian nor PyPI, which has only its clients), so the testbed puts this proxy between
the gateway and an edge agent. Each direction of each connection is its own link:

- a **token bucket** on bytes paces when a chunk may leave (``rate`` bytes per second, with a
  burst of ``burst`` bytes), and the reader waits for it, so a fast sender feels TCP back
  pressure as it would on a slow link instead of filling the proxy's memory;
- a **delay line** then holds every chunk for ``delay ± jitter`` (uniform, seeded) after it
  left, but never releases a chunk before the one read ahead of it: jitter spreads arrival
  times without reordering the byte stream, as on a single TCP path;
- end of stream travels down the same delay line, so a half-close reaches the other side after
  the data sent before it, and a reset or error on either side closes both.

The cores (:class:`TokenBucket`, :class:`DelayLine`) are synchronous and take the clock as an
argument; :class:`LinkProxy` is the asyncio plumbing. ``python -m pice_stack.link`` runs one
proxy as a child process of ``pice up`` / ``pice bench`` (:mod:`pice_stack.stack`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# How much the proxy reads at once: 16 KiB is about 6.5 ms at 20 Mbit/s, fine-grained enough
# that pacing looks continuous to a token stream and coarse enough to cost little CPU.
CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True)
class LinkSpec:
    """One-way characteristics, applied to each direction alike."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    # Bytes per second; None = unlimited.
    rate_bytes_s: float | None = None
    # Bytes the bucket may hold: how much can leave back to back after an idle spell.
    burst_bytes: int = CHUNK_BYTES

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay and jitter must be >= 0")
        if self.jitter_s > self.delay_s:
            raise ValueError("jitter must not exceed the delay (a packet cannot arrive early)")
        if self.rate_bytes_s is not None and self.rate_bytes_s <= 0:
            raise ValueError("rate must be positive")
        if self.burst_bytes < 1:
            raise ValueError("burst must be >= 1 byte")

    @classmethod
    def of(
        cls, *, delay_ms: float = 0.0, jitter_ms: float = 0.0, rate_mbit: float | None = None
    ) -> LinkSpec:
        """The units a profile is written in: milliseconds and Mbit/s."""
        return cls(
            delay_s=delay_ms / 1000.0,
            jitter_s=jitter_ms / 1000.0,
            rate_bytes_s=None if rate_mbit is None else rate_mbit * 1_000_000 / 8,
        )

    @property
    def is_transparent(self) -> bool:
        return self.delay_s == 0 and self.rate_bytes_s is None


class TokenBucket:
    """Bytes allowed out at ``rate`` per second, up to ``burst`` saved while idle.

    :meth:`reserve` takes the bytes at once and may drive the balance negative; the answer is
    when the balance is back at zero, i.e. when the chunk has been paid for and may leave.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = now

    def reserve(self, nbytes: int, now: float) -> float:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= nbytes
        return now if self._tokens >= 0 else now + -self._tokens / self._rate


class DelayLine:
    """When each chunk that left at ``sent`` arrives: sent + delay ± jitter, in order."""

    def __init__(self, delay: float, jitter: float, rng: random.Random) -> None:
        self._delay = delay
        self._jitter = jitter
        self._rng = rng
        self._last = float("-inf")

    def arrival(self, sent: float) -> float:
        spread = self._rng.uniform(-self._jitter, self._jitter) if self._jitter else 0.0
        # Never before the chunk ahead: TCP delivers a byte stream in order.
        self._last = max(self._last, sent + self._delay + spread)
        return self._last


class _Direction:
    """One direction of one connection: reader -> bucket -> delay line -> writer."""

    def __init__(
        self,
        spec: LinkSpec,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._reader = reader
        self._writer = writer
        self._bucket = (
            TokenBucket(spec.rate_bytes_s, spec.burst_bytes, loop.time())
            if spec.rate_bytes_s is not None
            else None
        )
        self._line = DelayLine(spec.delay_s, spec.jitter_s, rng)
        # Unbounded, but the reader is paced by the bucket, so it holds at most what the link
        # carries in one delay (bandwidth-delay product) plus one chunk.
        self._queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.read(CHUNK_BYTES)
                now = self._loop.time()
                sent = now
                if data and self._bucket is not None:
                    sent = self._bucket.reserve(len(data), now)
                    if sent > now:
                        await asyncio.sleep(sent - now)
                await self._queue.put((self._line.arrival(sent), data or None))
                if not data:
                    return
        except (ConnectionError, OSError):
            await self._queue.put((self._loop.time(), None))
            raise

    async def _write(self) -> None:
        while True:
            due, data = await self._queue.get()
            wait = due - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                # Half-close: the peer sees EOF after every byte sent before it.
                if self._writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        self._writer.write_eof()
                return
            self._writer.write(data)
            await self._writer.drain()

    async def run(self) -> None:
        await asyncio.gather(self._read(), self._write())


async def _run_both(directions: Sequence[_Direction]) -> None:
    """Both directions to their ends; a reset or error in one ends the other too."""
    tasks = [asyncio.create_task(d.run()) for d in directions]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(not t.cancelled() and t.exception() is not None for t in done):
            for task in pending:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()


class LinkProxy:
    """Accepts on ``listen_host:listen_port`` and forwards each connection over the link."""

    def __init__(
        self,
        spec: LinkSpec,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self._upstream = (upstream_host, upstream_port)
        self._listen = (listen_host, listen_port)
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self._listen)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [client_w]
        try:
            try:
                up_r, up_w = await asyncio.open_connection(*self._upstream)
            except OSError as exc:
                logger.warning("link: cannot reach %s:%d: %s", *self._upstream, exc)
                return
            writers.append(up_w)
            # Each direction draws its jitter from its own seeded stream.
            rngs = (random.Random(self._rng.random()), random.Random(self._rng.random()))
            await _run_both(
                (
                    _Direction(self.spec, client_r, up_w, rngs[0]),
                    _Direction(self.spec, up_r, client_w, rngs[1]),
                )
            )
        except asyncio.CancelledError:
            # Only :meth:`aclose` cancels a connection; end it quietly (asyncio's stream server
            # would log a handler task that ends cancelled as an error).
            pass
        finally:
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                    await writer.wait_closed()
            self._tasks.discard(task)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> LinkProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pice_stack.link",
        description="TCP proxy adding one-way delay, jitter and a bandwidth cap per direction",
    )
    p.add_argument("--listen", required=True, help="HOST:PORT to accept on")
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="± uniform, each way")
    p.add_argument("--rate-mbit", type=float, default=None, help="bandwidth cap each way")
    p.add_argument("--seed", type=int, default=0)
    return p


async def _serve(args: argparse.Namespace) -> None:
    spec = LinkSpec.of(delay_ms=args.delay_ms, jitter_ms=args.jitter_ms, rate_mbit=args.rate_mbit)
    listen_host, listen_port = _host_port(args.listen)
    proxy = LinkProxy(
        spec, *_host_port(args.upstream), listen_host=listen_host, listen_port=listen_port,
        seed=args.seed,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with proxy:
        logger.info("link %s -> %s: %s", args.listen, args.upstream, spec)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
