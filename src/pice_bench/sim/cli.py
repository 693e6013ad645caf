"""``pice sim``: placement policies on a simulated fleet too large for this machine.

A discrete-event simulation (:mod:`pice_bench.sim.engine`) of Poisson requests, the cloud's
sketch, and edges batching continuously at rates scaled from this repo's edge bench to Jetson
Orin Nano / NX / AGX (:mod:`pice_bench.sim.profiles`). The placement decisions are made by the
gateway's own policy classes, chosen by their registered names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulate placement policies on a large heterogeneous fleet",
        description=__doc__,
    )
    p.add_argument("--edges", type=int, default=100, help="default: %(default)s")
    p.add_argument(
        "--mix",
        choices=("heterogeneous", "homogeneous"),
        default="heterogeneous",
        help="heterogeneous: 50%% Orin Nano, 30%% NX, 20%% AGX on LAN/Wi-Fi/cellular links; "
        "homogeneous: all Orin NX on a LAN (default: %(default)s)",
    )
    p.add_argument(
        "--loads",
        default="0.8",
        help="comma-separated offered loads, shares of the fleet's saturated throughput "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--policies",
        default="round-robin,least-loaded,eft",
        help="registered placement policies; append +hedge for the gateway's hedging, e.g. "
        "eft+hedge (default: %(default)s)",
    )
    p.add_argument(
        "--hedge-factor",
        type=float,
        default=2.0,
        help="hedging of +hedge policies: a point is late at factor x estimate + floor "
        "(default: %(default)s)",
    )
    p.add_argument("--hedge-floor", type=float, default=2.0, help="seconds (default: %(default)s)")
    p.add_argument(
        "--duration", type=float, default=300.0, help="seconds of arrivals (default: %(default)s)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=30.0,
        help="first seconds of arrivals not measured (default: %(default)s)",
    )
    p.add_argument(
        "--slots",
        type=int,
        default=None,
        help="max sequences of every edge (default: per device class, 8/16/32 for "
        "Nano/NX/AGX; 16 is the edge agent's own default)",
    )
    p.add_argument(
        "--length-signal",
        type=float,
        default=None,
        metavar="R2",
        help="give the gateway a prediction of each point's length that explains this share "
        "(held-out R², 0-1) of the log-length variance; 1 is the true length (default: none, "
        "the gateway's running mean, as it is today)",
    )
    p.add_argument(
        "--placement-rate",
        choices=("points", "decode"),
        default="points",
        help="the rate curve the gateway's estimates use (progressive.placement_rate): fitted "
        "to finished points, or to the edges' reported decode rate (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the JSON record here")
    p.add_argument("--png", type=Path, default=None, help="write a latency-vs-load plot here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pice_bench.sim.engine import Workload
    from pice_bench.sim.sweep import (
        SimConfig,
        base_policy,
        report,
        run_sweep,
        table,
        write_plot,
    )
    from pice_gateway.placement.registry import PLACEMENT_POLICIES

    policies = tuple(name.strip() for name in args.policies.split(",") if name.strip())
    unknown = [name for name in policies if base_policy(name) not in PLACEMENT_POLICIES]
    if unknown:
        sys.stderr.write(
            f"pice sim: unknown policies {unknown}; known: {sorted(PLACEMENT_POLICIES)}\n"
        )
        return 2
    if args.length_signal is not None and not 0.0 <= args.length_signal <= 1.0:
        sys.stderr.write(f"pice sim: --length-signal must be in [0, 1], got {args.length_signal}\n")
        return 2
    config = SimConfig(
        edges=args.edges,
        mix=args.mix,
        loads=tuple(float(load) for load in args.loads.split(",")),
        policies=policies,
        workload=Workload(
            duration=args.duration, warmup=args.warmup, length_signal=args.length_signal
        ),
        seed=args.seed,
        slots=args.slots,
        hedge_factor=args.hedge_factor,
        hedge_floor=args.hedge_floor,
        rate_from=args.placement_rate,
    )
    results = run_sweep(config)
    sys.stdout.write(table(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report(config, results), indent=1) + "\n")
    if args.png is not None:
        slots = f"{config.slots} slots each" if config.slots else "slots per device class"
        title = f"{config.edges} {config.mix} edges, {slots} (simulated)"
        write_plot(results, args.png, title)
    return 0
