"""Soak the gateway: N concurrent streams for T seconds against fake upstreams at token pace.

The gateway, the fake cloud and two fake edges each run as a process (``tests/chaos/soak.py``);
every N clients ask again as soon as an answer ends, alternating the progressive path and the
cloud relay. Once a second the gateway's resident memory and open descriptors are read from
/proc. Prints a table, writes JSON (every sample) and plots RSS, descriptors and throughput
over time next to it (``.png``). Exits 1 if any answer was incomplete or an error.

nice -n 19 python benchmarks/soak.py --streams 200 --seconds 300 --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pice_bench.figures import figure
from tests.chaos.soak import SoakConfig, SoakResult, soak


def plot(result: SoakResult, path: Path) -> None:
    with figure(path, size=(8, 8), nrows=3, sharex=True) as (fig, axes):
        _draw(result, fig, axes)


def _draw(result: SoakResult, fig: Any, axes: Any) -> None:
    """Memory, descriptors and throughput over the soak, one panel each."""
    samples = result.samples
    t = [s.t for s in samples]
    axes[0].plot(t, [s.rss_mb for s in samples])
    axes[0].set_ylabel("gateway RSS (MB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [s.fds for s in samples])
    axes[1].set_ylabel("open descriptors")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(t, [s.tokens for s in samples], label="tokens received / s")
    axes[2].plot(t, [s.active for s in samples], label="streams open")
    axes[2].set_ylabel("throughput")
    axes[2].set_xlabel("seconds")
    axes[2].legend()
    config = result.config
    fig.suptitle(f"Soak: {config.streams} streams for {config.seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--cloud-tps", type=float, default=40.0, help="cloud tokens/s per stream")
    parser.add_argument("--edge-tps", type=float, default=30.0, help="edge tokens/s per sequence")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"))
    args = parser.parse_args()
    config = SoakConfig(
        streams=args.streams,
        seconds=args.seconds,
        cloud_tokens_per_second=args.cloud_tps,
        edge_tokens_per_second=args.edge_tps,
    )
    with tempfile.TemporaryDirectory(prefix="pice-soak-") as logs:
        result = soak(config, Path(logs))
    summary = result.summary()
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    for example in result.error_examples:
        print("error:", example)
    print(f"\n{'t (s)':>7} {'RSS MB':>8} {'fds':>5} {'open':>5} {'tok/s':>7}")
    step = max(1, len(result.samples) // 30)
    for sample in result.samples[::step]:
        print(
            f"{sample.t:>7.1f} {sample.rss_mb:>8.1f} {sample.fds:>5} "
            f"{sample.active:>5} {sample.tokens:>7}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
