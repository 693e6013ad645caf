"""Instructions per pass-through request: the gateway's own cost, counted, not timed.

``pice gateway`` (model ``pice-cloud``, router off, no edges) runs under valgrind's callgrind
with instrumentation off until warm; ``callgrind_control -i on`` then counts every instruction
the gateway process executes for ``--requests`` requests at one in flight, against
``benchmarks/overhead.py``'s fake upstream. The count does not depend on how busy the machine
is (the same total to 0.3% run to run), so it shows what a change to the gateway's code costs
or saves on any machine, busy or not, where wall-clock overhead (``overhead.py``) needs a quiet
one. Interpreter and library versions change the count: compare runs of one environment.

    python benchmarks/overhead_instructions.py --requests 200 --out /tmp/instructions.json

Prints a table (millions of instructions per request, non-streamed and streamed) and writes
JSON. Needs valgrind (Debian's ``valgrind``); each scenario takes about 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # the fake upstream, the load generator, the gateway's argv

WARMUP_REQUESTS = 30
START_TIMEOUT_S = 300.0


def _total_instructions(out_prefix: str) -> int:
    """The largest ``totals:`` of the dump files (callgrind writes one per dump)."""
    total = 0
    for path in glob.glob(out_prefix + "*"):
        for line in Path(path).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


async def _control(*args: str) -> None:
    """``callgrind_control`` (switch instrumentation, dump), failing loudly."""
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {err.decode()}")


async def _wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode} under callgrind")
        try:
            connection = await overhead.Connection.open(port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        connection.close()
        return
    raise RuntimeError("the gateway did not start under callgrind")


async def count(stream: bool, requests: int, chunks: int, workdir: Path) -> dict[str, Any]:
    """Instructions per request for one scenario (a fresh gateway under callgrind)."""
    upstream_port, port = overhead.free_port(), overhead.free_port()
    upstream = asyncio.create_task(overhead.serve_upstream(upstream_port, chunks))
    kind = "stream" if stream else "json"
    config = overhead.pice_config(workdir / f"pice-{kind}.json", upstream_port)
    out_prefix = str(workdir / f"callgrind-{kind}.out")
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_prefix}",
        *overhead.pice_argv(config, port),
    ]
    # PYTHONMALLOC=malloc: valgrind follows the system allocator; pymalloc's arenas confuse it.
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    proc = await asyncio.create_subprocess_exec(*argv, stderr=subprocess.DEVNULL, env=env)
    try:
        await _wait_listening(port, proc)
        raw = overhead.request_bytes(port, overhead.MODEL["pice"], stream)
        warm = await overhead.run_load(port, raw, stream, WARMUP_REQUESTS, 1)
        if warm["errors"]:
            raise RuntimeError(f"warm-up failed: {warm['errors'][0]}")
        pid = str(proc.pid)
        await _control("-i", "on", pid)
        measured = await overhead.run_load(port, raw, stream, requests, 1)
        await _control("-i", "off", pid)
        await _control("-d", pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=120)
        upstream.cancel()
    total = _total_instructions(out_prefix)
    return {
        "scenario": kind,
        "requests": requests,
        "errors": len(measured["errors"]),
        "instructions": total,
        "instructions_per_request": total / requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--out", type=Path, default=Path("/tmp/overhead_instructions.json"))
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pice-instructions-") as tmp:
        rows = [
            asyncio.run(count(stream, args.requests, args.chunks, Path(tmp)))
            for stream in (False, True)
        ]
    print(f"{'scenario':10} {'requests':>8} {'errors':>6} {'M instructions/request':>24}")
    for row in rows:
        print(
            f"{row['scenario']:10} {row['requests']:>8} {row['errors']:>6} "
            f"{row['instructions_per_request'] / 1e6:>24.3f}"
        )
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "chunks": args.chunks,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
