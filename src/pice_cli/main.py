"""The ``pice`` command: one entry point, one subcommand per component.

Each component module exposes ``register(subparsers)``; heavy imports (llama.cpp, httpx) happen
inside the command handlers so that an edge-only install can run ``pice edge`` without the
gateway's dependencies, and ``pice --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from pice.errors import PiceError

# Modules that each add one subcommand; imported when the parser is built.
_COMPONENTS = (
    "pice.models.cli",
    "edge_agent.cli",
    "pice_gateway.cli",
    "pice_gateway.router.cli",
    "pice_stack.cli",
    "pice_bench.cli",
    "pice_bench.sim.cli",
    "pice_tune.cli",
)
# A missing module of these packages is a bug, never a missing extra.
_FIRST_PARTY = frozenset(
    {"pice", "edge_agent", "pice_gateway", "pice_stack", "pice_bench", "pice_tune", "pice_cli"}
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pice", description="PICE: progressive inference across cloud and edge."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMPONENTS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            # An edge-only install (``pice-edge``, packaging/edge) has no gateway extras and
            # no gateway packages at all: a component whose own package is absent is skipped.
            # Any other missing first-party module is a bug.
            if exc.name == name.split(".")[0]:
                continue
            if exc.name and exc.name.split(".")[0] in _FIRST_PARTY:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except PiceError as exc:
        # A failure the user can act on (a missing file, a model that will not provision):
        # its message, not a traceback.
        sys.stderr.write(f"error: {exc.described}\n")
        return 1
