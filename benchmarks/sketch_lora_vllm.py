"""What serving a sketcher LoRA costs vLLM on CPU: start-up, and decoding with and without it.

Starts vLLM (``pice.cloud.vllm.VllmServer``, as ``pice up --cloud vllm`` does) in turn without
and with the adapter (the arguments ``pice up --sketch-lora`` adds), ``--rounds`` times, the
order alternating per round. Per start: seconds to ``GET /health`` 200; then one greedy answer
of exactly ``--max-tokens`` tokens (end of generation ignored, so every variant decodes the
same count) from the base model, and on the LoRA server from ``pice-sketcher`` too, each after
one short warm-up request. Prints a table and writes JSON.

Make a random adapter of the checkpoint first (or pass a trained one, ``pice tune train``'s
``run/adapter``, if it was trained on the same base model)::

    $PICE_TUNE_VENV/bin/python tests/support/random_lora.py \
        <cache>/hf/qwen2.5-0.5b-instruct /tmp/lora
    python benchmarks/sketch_lora_vllm.py --adapter /tmp/lora --rounds 2 \
        --out benchmarks/results/sketch_lora_vllm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from pice.cloud.vllm import VllmServer, prepare_vllm_server
from pice_stack.sketch_lora import SKETCH_MODEL
from pice_stack.stack import StackSpec, cloud_lora_args

QUESTION = [{"role": "user", "content": "Give me three tips for better sleep."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed_answer(server: VllmServer, model: str, max_tokens: int) -> tuple[float, str]:
    body = {"model": model, "messages": QUESTION, "temperature": 0, "ignore_eos": True}
    url = server.openai_base_url + "/chat/completions"
    httpx.post(url, json={**body, "max_tokens": 4}, timeout=600).raise_for_status()
    started = time.monotonic()
    response = httpx.post(url, json={**body, "max_tokens": max_tokens}, timeout=600)
    response.raise_for_status()
    text = str(response.json()["choices"][0]["message"]["content"])
    return time.monotonic() - started, text


def one_start(server: VllmServer, log: Path, max_tokens: int, lora: bool) -> dict[str, Any]:
    env = {**os.environ, **server.env()}
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server.argv(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        row: dict[str, Any] = {
            "server": "lora" if lora else "base",
            "startup_s": round(time.monotonic() - started, 1),
        }
        models = [server.served_model_name, *([SKETCH_MODEL] if lora else [])]
        for model in models:
            seconds, text = timed_answer(server, model, max_tokens)
            key = "sketcher" if model == SKETCH_MODEL else "base_model"
            row[f"{key}_s"] = round(seconds, 2)
            row[f"{key}_text"] = text[:80]
        return row
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="a peft adapter directory")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--cores", default="0", help="taskset -c CORES, as pice up pins it")
    parser.add_argument("--venv", type=Path, default=None, help="default: $PICE_VLLM_VENV")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/sketch-lora-vllm"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    base = prepare_vllm_server(args.model, port=free_port(), venv=args.venv, cores=args.cores)
    lora_args = cloud_lora_args(StackSpec(cloud="vllm", sketch_lora=args.adapter))
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        # Alternating order: a machine whose load drifts weighs on both alike.
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for lora in order:
            server = replace(base, port=free_port(), extra_args=lora_args if lora else ())
            log = args.logs / f"{'lora' if lora else 'base'}-{round_}.log"
            row = {"round": round_, **one_start(server, log, args.max_tokens, lora)}
            rows.append(row)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()

    def mean(server: str, key: str) -> float | None:
        values = [r[key] for r in rows if r["server"] == server and key in r]
        return round(statistics.mean(values), 2) if values else None

    summary = {
        server: {key: mean(server, key) for key in ("startup_s", "base_model_s", "sketcher_s")}
        for server in ("base", "lora")
    }
    sys.stdout.write(
        f"\n| vLLM | start-up s | {args.max_tokens} tokens, base model s | "
        f"{args.max_tokens} tokens, {SKETCH_MODEL} s |\n|---|---|---|---|\n"
    )
    for server, values in summary.items():
        cells = " | ".join("–" if v is None else f"{v:g}" for v in values.values())
        sys.stdout.write(f"| {server} | {cells} |\n")
    if args.out is not None:
        record = {
            "model": args.model,
            "adapter": str(args.adapter),
            "lora_args": list(lora_args),
            "max_tokens": args.max_tokens,
            "cores": args.cores,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "load_average_at_end": os.getloadavg(),
            "rows": rows,
            "summary": summary,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
