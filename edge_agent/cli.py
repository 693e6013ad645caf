"""``pice edge serve`` (the edge agent) and ``pice edge bench`` (its batching benchmark).

``pice up`` launches ``pice edge serve`` with exactly these flags; keep them stable.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("edge", help="run an edge agent (batched llama.cpp)")
    actions = parser.add_subparsers(dest="edge_command", required=True)

    serve = actions.add_parser("serve", help="serve one GGUF model over HTTP")
    serve.add_argument("--model", help="bundled model name or path to a .gguf file")
    serve.add_argument("--model-id", dest="model_id", help="name clients use (default: model's)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8101)")
    serve.add_argument("--threads", type=int, help="CPU threads (default: CPUs available)")
    serve.add_argument("--ctx", dest="n_ctx", type=int, help="context size in tokens (4096)")
    serve.add_argument(
        "--max-seqs", dest="max_sequences", type=int, help="sequences decoded at once (16)"
    )
    serve.add_argument("--n-batch", dest="n_batch", type=int, help="tokens per decode step (512)")
    serve.add_argument(
        "--prefix-cache",
        dest="prefix_cache_slots",
        type=int,
        help="recent prompt prefixes kept in the KV cache for reuse (4; 0 = off)",
    )
    serve.add_argument(
        "--n-gpu-layers",
        dest="n_gpu_layers",
        type=int,
        help="layers offloaded to the GPU in a GPU build of llama.cpp (0; -1 = all)",
    )
    serve.add_argument("--lora", type=Path, help="LoRA adapter GGUF to apply (pice tune export)")
    serve.add_argument("--lora-scale", dest="lora_scale", type=float, help="adapter scale (1.0)")
    serve.add_argument(
        "--lora-merge",
        dest="lora_merge",
        action="store_const",
        const=True,
        help="fold --lora into the weights at start (cached): the stock model's decode speed",
    )
    serve.add_argument(
        "--lora-module",
        dest="lora_modules",
        action="append",
        metavar="NAME=PATH[:SCALE]",
        help='serve a LoRA adapter GGUF as model NAME, chosen per request by its "model" '
        "(repeatable; on top of --lora if both are given)",
    )
    serve.add_argument(
        "--token",
        dest="api_token",
        help="require 'Authorization: Bearer T' (visible in ps: prefer --token-file or "
        "PICE_EDGE_API_TOKEN)",
    )
    serve.add_argument(
        "--token-file", dest="api_token_file", type=Path, help="file holding the token"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback address without a token (logged as a WARNING)",
    )
    serve.add_argument(
        "--dial",
        dest="dial_url",
        action="append",
        metavar="URL",
        help="dial this gateway (its base URL; repeatable) and take work over that connection: "
        "for an edge behind NAT, which needs no inbound port then (token: the gateway's "
        "edge_client.token, given as --token-file or PICE_EDGE_API_TOKEN)",
    )
    serve.add_argument(
        "--dial-each-address",
        dest="dial_each_address",
        action="store_true",
        default=None,
        help="dial every address a --dial host resolves to (gateway replicas behind a "
        "headless Service), re-resolved every 30 s",
    )
    serve.add_argument(
        "--join",
        dest="join_url",
        action="append",
        metavar="URL",
        help="register with the gateway at URL once loaded (repeatable; needs --token)",
    )
    serve.add_argument(
        "--advertise-url",
        dest="advertise_url",
        metavar="URL",
        help="where gateways reach this edge (default http://HOST:PORT on loopback)",
    )
    serve.add_argument(
        "--name",
        help="the name gateways place this edge under (default: the host name, joining or "
        "dialling)",
    )
    serve.add_argument("--config", type=Path, help="YAML file with these settings")
    serve.set_defaults(handler=_serve)

    bench = actions.add_parser("bench", help="batched vs one-at-a-time expansion benchmark")
    from edge_agent.bench import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)


def _serve(args: argparse.Namespace) -> int:
    from edge_agent.api.app import create_app
    from edge_agent.settings import EdgeSettings, load_settings
    from pice.http.serve import serve_app
    from pice.logs import configure_logging
    from pice.settings_check import settings_warnings
    from pice.tracing_factory import log_filters

    settings = load_settings(
        args.config,
        model=args.model,
        model_id=args.model_id,
        host=args.host,
        port=args.port,
        threads=args.threads,
        n_ctx=args.n_ctx,
        max_sequences=args.max_sequences,
        n_batch=args.n_batch,
        prefix_cache_slots=args.prefix_cache_slots,
        n_gpu_layers=args.n_gpu_layers,
        lora=args.lora,
        lora_scale=args.lora_scale,
        lora_merge=args.lora_merge,
        lora_modules=args.lora_modules,
        api_token=args.api_token,
        api_token_file=args.api_token_file,
        allow_insecure=args.insecure,
        dial_url=args.dial_url,
        dial_each_address=args.dial_each_address,
        join_url=args.join_url,
        advertise_url=args.advertise_url,
        name=args.name,
    )
    # Log lines carry the gateway's request id (``x-request-id``), as text or JSON; uvicorn's
    # own lines go through the same handler (no log_config of its own). Configured before the
    # app, so a refused insecure bind is logged in the same format.
    configure_logging(settings.log_format, args.log_level.upper(), log_filters(settings.tracing))
    for warning in settings_warnings(EdgeSettings, args.config, os.environ):
        logger.warning("%s", warning)
    return serve_app(
        lambda: create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        logger=logger,
    )


def _bench(args: argparse.Namespace) -> int:
    from edge_agent.bench import run_from_args

    return run_from_args(args)
