"""Profile PICE's ``pice-cloud`` pass-through under cProfile: where a request's time goes.

The gateway runs in this process (uvicorn, the loop and HTTP parser ``pice gateway`` uses)
under cProfile, in front of ``benchmarks/overhead.py``'s fake upstream (a subprocess); a load
thread sends ``--requests`` requests at ``--concurrency``. Prints Python function calls per
request (deterministic, so it shows an optimisation's direction even on a busy machine, where
timings do not) and the functions with the most own time.

    python benchmarks/overhead_profile.py --stream --requests 2000 --top 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import threading
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

from pice_gateway.app import create_app
from pice_gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="also write the pstats here")
    args = parser.parse_args(argv)

    env = dict(__import__("os").environ)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        upstream_port, port = overhead.free_port(), overhead.free_port()
        argv_upstream = [sys.executable, overhead.__file__, "--serve-upstream", str(upstream_port)]
        argv_upstream += ["--chunks", str(args.chunks)]
        stack.enter_context(
            overhead.started("upstream", argv_upstream, upstream_port, Path(tmp), env, 30)
        )
        settings = GatewaySettings(
            cloud={"base_url": f"http://127.0.0.1:{upstream_port}/v1", "model": "fake-model"},
            edges=[],
            router={"enabled": False},
            api_keys=[overhead.API_KEY],
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), port=port, log_level="warning", access_log=False)
        )
        outcome: dict[str, object] = {}

        def load() -> None:
            while not server.started:
                threading.Event().wait(0.05)
            raw = overhead.request_bytes(port, "pice-cloud", args.stream)
            outcome.update(
                asyncio.run(
                    overhead.run_load(port, raw, args.stream, args.requests, args.concurrency)
                )
            )
            server.should_exit = True

        thread = threading.Thread(target=load)
        thread.start()
        profile = cProfile.Profile()
        profile.runcall(server.run)
        thread.join()

    errors = outcome.get("errors") or []
    stats = pstats.Stats(profile, stream=io.StringIO())
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{'stream' if args.stream else 'json'}: {args.requests} requests, errors {len(errors)}")
    print(f"python function calls per request: {calls / args.requests:.0f}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    if args.out is not None:
        profile.dump_stats(args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
