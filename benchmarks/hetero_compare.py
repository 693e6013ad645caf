"""Compare placement policies measured by separate ``pice bench`` runs on the same arrival
schedules.

Each run's load-phase requests are paired by their place in the (identical, seeded) schedule,
so a bootstrap resamples arrival slots and keeps every policy's latency for that slot:

    python benchmarks/hetero_compare.py benchmarks/results/hetero/{least-loaded,eft,round-robin}

The first run is the baseline. Prints p50/p95 per run and each ratio to the baseline with a
95% interval; refuses run arguments that do not cover the same schedules. A second table gives
each run's time to first token, where its points were expanded (the cloud takes points only by
failover or, with ``progressive.cloud_overflow``, when it is clearly sooner), and how many
arrivals were answered by the cloud whole because their framed sketch turned to prose.

Several runs of one policy, joined by commas, are pooled: their latencies of the resampled
slots are taken together (a slot keeps all its runs), so repeated runs narrow the figure
without mixing slots up:

    python benchmarks/hetero_compare.py DIR_LL1,DIR_LL2,DIR_LL3 DIR_EFT1,DIR_EFT2,DIR_EFT3

The pooled runs may come from several schedules (``pice bench --seed``): a slot is then an
arrival of one schedule, every run argument must cover the same schedules, and the bootstrap
resamples each schedule's slots on their own (stratified), so every schedule keeps its weight.
A p95 over one 30-arrival schedule is one Poisson burst's drain; several schedules put several
bursts in it:

    python benchmarks/hetero_compare.py LL_SEED0,LL_SEED1,LL_SEED2 EFT_SEED0,EFT_SEED1,EFT_SEED2

``--out FILE.json`` also writes every figure of the two tables (and the runs, the schedules'
fingerprints, the slots kept per schedule) as JSON; ``--png FILE.png`` plots each run's
latencies (the kept slots, pooled) as a distribution with its p95 marked.

``--outlined-only`` keeps only the arrival slots every run answered with an outline: a request
whose framed sketch turned to prose is answered by the cloud whole (``pice.reason:
"sketch_prose"``) and never placed, so under load its latency is the contended cloud's, not
the placement policy's.

A third table checks the scheduler's estimator where the runs recorded it (gateways from
2026-12-05 on): per edge, a point's time from placement to its text's end over the expected
finish the gateway computed when it placed it (``pice.points[].placed_ms``, ``done_ms``,
``estimate_s``; points with one attempt), as p50 and p90 — 1.0 is an exact estimate — and,
where the estimate's inputs were recorded (``pice.points[].estimate``), the error split into
the point's length over the expected one and the assumed per-sequence rate over the achieved
one, with the shares of points placed on the prior rate and on the points-fitted one, and the
edge's busy count.

``--tail N`` also lists each run's N slowest arrivals: the question, its path (outline or the
cloud's whole answer), the sketch's and the expansion's time, and where its points ran — what
sets a run's p95.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from pice_bench.figures import figure
from pice_bench.stats import percentile

RESAMPLES = 2000


def _load_requests(run_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    data = json.loads((run_dir / "results.json").read_text())
    fingerprints = sorted(s["fingerprint"] for s in data["config"]["load_schedules"].values())
    load = sorted(
        (r for r in data["requests"] if r["phase"] == "load"), key=lambda r: r["scheduled_s"]
    )
    return ",".join(fingerprints), load


def latencies(load: list[dict[str, Any]]) -> list[float]:
    return [float(r["answer"]["latency_s"]) for r in load]


def outlined(load: list[dict[str, Any]]) -> list[bool]:
    """Per arrival slot, whether the request was answered with an outline (placed points)."""
    return [(r["answer"].get("extension") or {}).get("reason") == "outline" for r in load]


def details(loads: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Time to first token (p50, p95), the points' sources, the prose fallbacks (arrivals
    whose framed sketch turned to prose, answered by the cloud whole) and the points the
    gateway hedged (and the hedges won), over the pooled runs."""
    ttft: list[float] = []
    points = cloud = failed = prose = hedges = hedges_won = 0
    for load in loads:
        for request in load:
            answer = request["answer"]
            if answer.get("error"):
                failed += 1
                continue
            if answer.get("ttft_s") is not None:
                ttft.append(float(answer["ttft_s"]))
            extension = answer.get("extension") or {}
            prose += extension.get("reason") == "sketch_prose"
            hedges += int(extension.get("hedges") or 0)
            hedges_won += int(extension.get("hedges_won") or 0)
            for point in extension.get("points", []):
                points += 1
                cloud += point.get("edge") == "cloud"
    return {
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p95_s": percentile(ttft, 95),
        "points": points,
        "points_on_cloud": cloud,
        "prose_answers": prose,
        "hedges": hedges,
        "hedges_won": hedges_won,
        "arrivals": sum(len(load) for load in loads),
        "failed": failed,
        "estimate_check": estimate_check(loads),
    }


def rate_source(inputs: dict[str, Any]) -> str:
    """Where an estimate's rate came from: ``rate_source``, or (the first gateways to record
    inputs, 2026-12-05) ``fitted`` false for the prior, true for the decode-rate fit."""
    if "rate_source" in inputs:
        return str(inputs["rate_source"])
    return "decode" if inputs.get("fitted", True) else "prior"


def estimate_check(loads: list[list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per edge, how a point's time from placement to its end compares with the expected
    finish computed at placement: the ratio's p50 and p90 over points with one attempt and a
    recorded estimate (empty for runs whose gateway did not record them).

    Where the gateway recorded the estimate's inputs (``pice.points[].estimate``), the error
    is split in two: ``tokens_p50``, the point's tokens over the expected length it was
    placed with, and ``rate_p50``, the per-sequence rate assumed (``tokens / decode_s``) over
    the one achieved (the point's tokens over its time, queueing and prefill included); their
    product is about the ratio. ``prior`` is the share placed with the fleet's prior rate (no
    fitted rate yet), ``points_fit`` the share placed with the curve fitted to the edge's
    finished points (``progressive.placement_rate: points``, after 8 of them; 0 for runs
    before it), ``busy_p50`` the sequences the edge had at placement."""
    ratios: dict[str, list[float]] = {}
    parts: dict[str, list[tuple[float, float, str, float]]] = {}
    for load in loads:
        for request in load:
            for point in (request["answer"].get("extension") or {}).get("points", []):
                estimate, placed, done = (
                    point.get(k) for k in ("estimate_s", "placed_ms", "done_ms")
                )
                if len(point.get("attempts", [])) != 1 or None in (estimate, placed, done):
                    continue
                if estimate <= 0:
                    continue
                took = (done - placed) / 1000.0
                ratios.setdefault(point["edge"], []).append(took / estimate)
                inputs, tokens = point.get("estimate"), point.get("tokens") or 0
                if inputs and inputs["decode_s"] > 0 and tokens > 0 and took > 0:
                    assumed = inputs["tokens"] / inputs["decode_s"]
                    parts.setdefault(point["edge"], []).append(
                        (
                            tokens / inputs["tokens"],
                            assumed / (tokens / took),
                            rate_source(inputs),
                            float(inputs["busy"]),
                        )
                    )
    check: dict[str, dict[str, float]] = {}
    for edge, values in sorted(ratios.items()):
        row = {"points": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90)}
        if split := parts.get(edge):
            row["tokens_p50"] = percentile([t for t, _, _, _ in split], 50)
            row["rate_p50"] = percentile([r for _, r, _, _ in split], 50)
            sources = [source for _, _, source, _ in split]
            row["prior"] = sources.count("prior") / len(split)
            row["points_fit"] = sources.count("points") / len(split)
            row["busy_p50"] = percentile([b for _, _, _, b in split], 50)
        check[edge] = row
    return check


def slowest(load: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` slowest arrivals of one run, slowest first: slot, question, latency, path,
    the sketch's time and the expansion's (both from the gateway's ``pice.timings``), the
    number of points, the longest point's tokens, points per edge and hedges."""
    rows = []
    for slot, request in enumerate(load):
        answer = request["answer"]
        extension = answer.get("extension") or {}
        timings = extension.get("timings") or {}
        points = extension.get("points") or []
        edges = Counter(str(point.get("edge")) for point in points)
        rows.append(
            {
                "slot": slot,
                "question": request.get("question_id", ""),
                "latency_s": float(answer["latency_s"]),
                "path": extension.get("reason", "error" if answer.get("error") else "?"),
                "sketch_s": (timings.get("sketch_ms") or 0.0) / 1000.0,
                "expansion_s": (timings.get("expansion_ms") or 0.0) / 1000.0,
                "points": len(points),
                "longest_point_tokens": max((p.get("tokens") or 0 for p in points), default=0),
                "edges": dict(sorted(edges.items())),
                "hedges": int(extension.get("hedges") or 0),
            }
        )
    return sorted(rows, key=lambda row: -row["latency_s"])[:count]


def interval(values: list[float]) -> tuple[float, float]:
    return percentile(values, 2.5), percentile(values, 97.5)


# A run argument's latencies: per schedule fingerprint, one list per run (index = arrival slot).
Runs = dict[str, list[list[float]]]
# Arrival slots per schedule fingerprint.
Slots = dict[str, list[int]]


def _pooled(runs: Runs, slots: Slots) -> list[float]:
    return [run[i] for fp, chosen in slots.items() for run in runs[fp] for i in chosen]


def resample(kept: Slots, rng: random.Random) -> Slots:
    """One bootstrap draw: each schedule's kept slots resampled on their own (stratified)."""
    return {fp: [rng.choice(chosen) for _ in chosen] for fp, chosen in kept.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", help="result directories (DIR or DIR,DIR,... pooled), baseline first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--outlined-only",
        action="store_true",
        help="only the arrival slots every run answered with an outline",
    )
    parser.add_argument(
        "--tail", type=int, default=0, metavar="N", help="also list each run's N slowest arrivals"
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--png", type=Path, help="plot each run's latency distribution (the kept slots) here"
    )
    parser.add_argument(
        "--labels", help="the plot's name for each run argument, comma-separated, in order"
    )
    args = parser.parse_args()
    groups: dict[str, Runs] = {}
    extra: dict[str, dict[str, Any]] = {}
    shapes: dict[str, list[list[bool]]] = {}
    specs = [[Path(part) for part in spec.split(",")] for spec in args.runs]
    tails: dict[str, list[dict[str, Any]]] = {}
    for paths, name in zip(specs, _names(specs), strict=True):
        loaded = [_load_requests(path) for path in paths]  # each results.json read once
        loads = [load for _, load in loaded]
        if args.tail > 0:
            for path, load in zip(paths, loads, strict=True):
                key = path.name if len(paths) > 1 else name
                tails[f"{path.parent.name}/{key}" if key in tails else key] = slowest(
                    load, args.tail
                )
        by_schedule: Runs = {}
        for fp, load in loaded:
            by_schedule.setdefault(fp, []).append(latencies(load))
            shapes.setdefault(fp, []).append(outlined(load))
        groups[name] = dict(sorted(by_schedule.items()))
        extra[name] = {"runs": [str(path) for path in paths], **details(loads)}
    covered = {name: sorted(runs) for name, runs in groups.items()}
    if len({tuple(fps) for fps in covered.values()}) != 1:
        sys.stderr.write(
            "the run arguments do not cover the same arrival schedules: "
            + "; ".join(f"{name}: {', '.join(fps)}" for name, fps in covered.items())
            + "\n"
        )
        return 1
    (base_name, base), *others = groups.items()
    n = {fp: min(len(run) for runs in groups.values() for run in runs[fp]) for fp in base}
    kept = {
        fp: [i for i in range(count) if not args.outlined_only or all(s[i] for s in shapes[fp])]
        for fp, count in n.items()
    }
    total, total_kept = sum(n.values()), sum(len(chosen) for chosen in kept.values())
    rng = random.Random(args.seed)
    rows = [_row(base_name, base, base, kept, rng)]
    rows += [_row(name, runs, base, kept, rng) for name, runs in others]
    for row in rows:
        row.update(extra[row["run"]])
    _print_tables(sys.stdout, rows, total_kept, total, outlined_only=args.outlined_only)
    if tails:
        _print_tails(sys.stdout, tails)
    if args.out:
        report = {
            "fingerprint": ",".join(base),
            "schedules": {fp: {"slots": n[fp], "slots_kept": len(kept[fp])} for fp in base},
            "baseline": base_name,
            "outlined_only": args.outlined_only,
            "slots": total,
            "slots_kept": total_kept,
            "seed": args.seed,
            "resamples": RESAMPLES,
            "rows": rows,
            **({"slowest": tails} if tails else {}),
        }
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.png:
        labels = args.labels.split(",") if args.labels else list(groups)
        if len(labels) != len(groups):
            sys.stderr.write(f"--labels names {len(labels)} runs, not {len(groups)}\n")
            return 1
        named = dict(zip(groups, labels, strict=True))
        latency = {named[name]: _pooled(runs, kept) for name, runs in groups.items()}
        plot(latency, [{**row, "run": named[row["run"]]} for row in rows], args.png)
    return 0


def _names(specs: list[list[Path]]) -> list[str]:
    """Each run argument's name in the tables: its directories' names joined by ``+``, with
    their parents' where two arguments would otherwise share a name (``set1/eft-1`` and
    ``set2/eft-1``)."""
    short = ["+".join(path.name for path in paths) for paths in specs]
    return [
        name
        if short.count(name) == 1
        else "+".join(f"{path.parent.name}/{path.name}" for path in paths)
        for name, paths in zip(short, specs, strict=True)
    ]


def plot(latency: dict[str, list[float]], rows: list[dict[str, Any]], png: Path) -> None:
    """Each run's latencies as a distribution (share of arrivals answered by t), its p95
    marked: the runs' tails side by side, which the p95 ratio alone summarises."""
    with figure(png, size=(7.5, 4.5)) as (_, ax):
        for row in rows:
            values = sorted(latency[row["run"]])
            shares = [(i + 1) / len(values) for i in range(len(values))]
            label = f"{row['run']}: p50 {row['p50_s']:.0f} s, p95 {row['p95_s']:.0f} s"
            (line,) = ax.step(values, shares, where="post", label=label)
            ax.axvline(row["p95_s"], color=line.get_color(), linestyle=":", linewidth=1)
        ax.axhline(0.95, color="grey", linewidth=0.5)
        ax.set_xlabel("latency of an arrival, s (dotted: each run's p95)")
        ax.set_ylabel("share of arrivals answered")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")


def _row(name: str, runs: Runs, base: Runs, kept: Slots, rng: random.Random) -> dict[str, Any]:
    """One run's (or pooled runs') p50/p95 over the kept slots and, unless it is the baseline,
    each ratio to the baseline's with a bootstrap 95% interval over arrival slots (stratified
    by schedule)."""
    lat, ref = _pooled(runs, kept), _pooled(base, kept)
    row: dict[str, Any] = {
        "run": name, "n": len(lat), "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95),
    }  # fmt: skip
    if runs is base:
        return row
    r50, r95 = [], []
    for _ in range(RESAMPLES):
        slots = resample(kept, rng)
        mine, theirs = _pooled(runs, slots), _pooled(base, slots)
        r50.append(percentile(mine, 50) / percentile(theirs, 50))
        r95.append(percentile(mine, 95) / percentile(theirs, 95))
    row["p50_ratio"] = percentile(lat, 50) / percentile(ref, 50)
    row["p50_ratio_ci95"] = list(interval(r50))
    row["p95_ratio"] = percentile(lat, 95) / percentile(ref, 95)
    row["p95_ratio_ci95"] = list(interval(r95))
    return row


def _print_tables(
    out: TextIO, rows: list[dict[str, Any]], kept: int, n: int, *, outlined_only: bool
) -> None:
    if outlined_only:
        out.write(f"{kept} of {n} arrival slots answered with an outline in every run\n\n")
    out.write("| run | n | p50 s | p95 s | p50 / base [95% CI] | p95 / base [95% CI] |\n")
    out.write("|---|---|---|---|---|---|\n")
    for row in rows:
        ratios = "– | –"
        if "p50_ratio" in row:
            (lo50, hi50), (lo95, hi95) = row["p50_ratio_ci95"], row["p95_ratio_ci95"]
            ratios = (
                f"{row['p50_ratio']:.2f} [{lo50:.2f}, {hi50:.2f}] | "
                f"{row['p95_ratio']:.2f} [{lo95:.2f}, {hi95:.2f}]"
            )
        out.write(
            f"| {row['run']} | {row['n']} | {row['p50_s']:.1f} | {row['p95_s']:.1f} | {ratios} |\n"
        )
    out.write(
        "\n| run | ttft p50 s | ttft p95 s | points on the cloud | sketch turned to prose "
        "(cloud answered whole) | hedges (won) | failed |\n"
    )
    out.write("|---|---|---|---|---|---|---|\n")
    for row in rows:
        cloud, points = row["points_on_cloud"], row["points"]
        out.write(
            f"| {row['run']} | {row['ttft_p50_s']:.2f} | {row['ttft_p95_s']:.2f} | "
            f"{cloud} of {points} ({100.0 * cloud / max(points, 1):.0f}%) | "
            f"{row['prose_answers']} of {row['arrivals']} | "
            f"{row['hedges']} ({row['hedges_won']}) | {row['failed']} |\n"
        )
    if any(row.get("estimate_check") for row in rows):
        out.write(
            "\n| run | edge | points | (done - placed) / estimate, p50 | p90 "
            "| tokens / expected, p50 | assumed / achieved rate, p50 | prior rate "
            "| points-fit rate | busy p50 |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
        )
        for row in rows:
            for edge, check in row.get("estimate_check", {}).items():
                split = (
                    f"{check['tokens_p50']:.2f} | {check['rate_p50']:.2f} | "
                    f"{100.0 * check['prior']:.0f}% | {100.0 * check['points_fit']:.0f}% | "
                    f"{check['busy_p50']:.0f}"
                    if "rate_p50" in check
                    else "- | - | - | - | -"
                )
                out.write(
                    f"| {row['run']} | {edge} | {check['points']:.0f} | "
                    f"{check['p50']:.2f} | {check['p90']:.2f} | {split} |\n"
                )


def _print_tails(out: TextIO, tails: dict[str, list[dict[str, Any]]]) -> None:
    out.write(
        "\n| run | slot | question | latency s | path | sketch s | expansion s | points "
        "| longest point tokens | points per edge | hedges |\n"
    )
    out.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for run, rows in tails.items():
        for row in rows:
            edges = ", ".join(f"{edge} {count}" for edge, count in row["edges"].items()) or "–"
            out.write(
                f"| {run} | {row['slot']} | {row['question']} | {row['latency_s']:.1f} | "
                f"{row['path']} | {row['sketch_s']:.1f} | {row['expansion_s']:.1f} | "
                f"{row['points']} | {row['longest_point_tokens']} | {edges} | {row['hedges']} |\n"
            )


if __name__ == "__main__":
    raise SystemExit(main())
