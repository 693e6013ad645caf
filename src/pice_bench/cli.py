"""``pice bench``: PICE vs cloud-only vs Skeleton-of-Thought, latency, throughput and quality.

Without URLs it sets up the testbed on this machine (cloud pinned to one core, edge agents to
another, the gateway), runs every mode on the same cloud and questions, and tears it down.
With ``--gateway-url`` / ``--cloud-url`` it measures an already running system instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pice_bench.questions import DEFAULT_QUESTIONS

ALL_MODES = "cloud-only,sot-cloud,pice-progressive,pice-auto,fleet-direct"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark PICE against cloud-only and Skeleton-of-Thought",
        description=__doc__,
    )
    p.add_argument(
        "--questions",
        type=Path,
        default=None,
        help=f"JSONL of questions (default: {DEFAULT_QUESTIONS})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="output directory (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few-minute run: 3 questions, short answers, one small load step",
    )
    p.add_argument(
        "--modes",
        default=ALL_MODES,
        help="comma-separated modes to run (default: %(default)s; add pice-ensemble to compare "
        "the ensemble of edge candidates with single-candidate pice-progressive)",
    )
    p.add_argument(
        "--per-category", type=int, default=None, help="use at most N questions of each category"
    )
    p.add_argument("--limit", type=int, default=None, help="use at most N questions in all")
    p.add_argument(
        "--suitable",
        type=int,
        default=None,
        help="use N questions that suit points, spread over their categories "
        "(with --unsuitable M, M that do not); replaces --per-category",
    )
    p.add_argument(
        "--unsuitable",
        type=int,
        default=0,
        help="with --suitable: also M questions that do not suit points (default: %(default)s)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max_tokens of every request (default 768; --quick 96)",
    )
    p.add_argument("--seed", type=int, default=0)

    tb = p.add_argument_group("testbed (ignored with --gateway-url/--cloud-url)")
    tb.add_argument(
        "--cloud",
        choices=("edge", "vllm"),
        default="edge",
        help="cloud engine: the project's llama.cpp engine (`pice edge serve`) or vLLM",
    )
    tb.add_argument(
        "--cloud-model", default="qwen2.5-coder-1.5b-instruct", help="default: %(default)s"
    )
    tb.add_argument(
        "--edge-model", default="qwen2.5-coder-0.5b-instruct-q8_0", help="default: %(default)s"
    )
    tb.add_argument("--edges", type=int, default=1, help="edge agents (default: %(default)s)")
    tb.add_argument(
        "--profile",
        default=None,
        help="testbed profile: a name in configs/testbed/ (homogeneous, heterogeneous, "
        "heterogeneous-isolated) or a "
        "YAML path; its edges (speeds, links) replace --edges",
    )
    tb.add_argument(
        "--placement",
        default=None,
        help="the gateway's placement policy: round-robin, least-loaded, eft "
        "(default: the gateway's own)",
    )
    tb.add_argument(
        "--placement-rate",
        choices=("points", "decode"),
        default=None,
        help="the rate curve the gateway's estimates use (progressive.placement_rate): fitted "
        "to finished points or to the edges' reported decode rate (default: the gateway's own)",
    )
    tb.add_argument(
        "--threads", type=int, default=1, help="threads per model server (default: %(default)s)"
    )
    tb.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the cloud to core 0 and the edges to the other cores",
    )
    tb.add_argument(
        "--vllm-venv",
        type=Path,
        default=None,
        help="vLLM environment (default: $PICE_VLLM_VENV or .venv-vllm)",
    )
    tb.add_argument(
        "--sketch-lora",
        type=Path,
        default=None,
        help="a sketcher LoRA for the cloud's outline sketches, as `pice up --sketch-lora`: "
        "the peft adapter directory with --cloud vllm, the adapter GGUF otherwise",
    )
    tb.add_argument(
        "--edge-lora",
        type=Path,
        default=None,
        help="a LoRA adapter GGUF every edge applies, as `pice up --edge-lora`",
    )
    tb.add_argument(
        "--edge-lora-scale",
        type=float,
        default=None,
        help="the edges' adapter scale, as `pice up --edge-lora-scale` (default 1.0)",
    )
    tb.add_argument(
        "--edge-lora-merge",
        action="store_true",
        help="fold the adapter into each edge's model at start, as `pice up --edge-lora-merge`",
    )

    ext = p.add_argument_group("an already running system")
    ext.add_argument("--gateway-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    ext.add_argument("--cloud-url", default=None, help="the cloud's own base URL, .../v1")
    ext.add_argument(
        "--cloud-model-name",
        default=None,
        help="model id at --cloud-url (default: its first /v1/models entry)",
    )
    ext.add_argument("--api-key", default=None, help="bearer key of the gateway")
    ext.add_argument("--cloud-api-key", default=None, help="bearer key of the cloud")

    q = p.add_argument_group("quality")
    q.add_argument(
        "--judge-url",
        default=None,
        help="OpenAI-compatible base URL of the judge (default: the cloud)",
    )
    q.add_argument("--judge-model", default=None, help="judge model id (default: its first)")
    q.add_argument("--judge-api-key", default=None)
    q.add_argument(
        "--judge-modes",
        default="pice-progressive,pice-ensemble",
        help="modes judged against cloud-only, those of them that run (default: %(default)s)",
    )
    q.add_argument(
        "--judge-grades",
        choices=("expected", "integer"),
        default="expected",
        help="read each grade as the expectation over the judge's token probabilities "
        "(expected, when its server returns them) or as the digit it wrote (integer)",
    )
    q.add_argument("--no-judge", action="store_true", help="skip pairwise judging")
    q.add_argument(
        "--calibrate-judge",
        action="store_true",
        help="also measure the judge's position and length bias and its accuracy on pairs "
        "with a known better answer (about 50 extra judge calls)",
    )

    ld = p.add_argument_group("throughput (open-loop Poisson arrivals)")
    ld.add_argument(
        "--slo-seconds",
        type=float,
        default=None,
        help="p95 end-to-end latency SLO (default 120; --quick 90)",
    )
    ld.add_argument(
        "--rates",
        default=None,
        help="offered rates in req/s, comma-separated (default 0.02,0.04,0.08)",
    )
    ld.add_argument(
        "--load-requests",
        type=int,
        default=None,
        help="max requests per rate step (default 30; --quick 3)",
    )
    ld.add_argument(
        "--load-seconds",
        type=float,
        default=None,
        help="max arrival window per rate step in seconds (default: none, every step sends "
        "all --load-requests; --quick 20)",
    )
    ld.add_argument(
        "--load-modes",
        default=None,
        help="comma-separated modes to load (default: every mode of the run)",
    )
    ld.add_argument(
        "--load-all-questions",
        action="store_true",
        help="load with every question, not only those that suit points",
    )
    only = ld.add_mutually_exclusive_group()
    only.add_argument("--no-load", action="store_true", help="skip the throughput sweep")
    only.add_argument(
        "--load-only",
        action="store_true",
        help="only the throughput sweep: no one-at-a-time latency pass over the questions and "
        "no judging (a sweep can then draw its arrivals from many questions cheaply)",
    )
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    # The parser is here, the run in main.py, imported only when the command runs (it pulls in
    # httpx and the gateway's progressive parts); main.py never imports this module.
    from pice_bench.main import main

    return main(args)
