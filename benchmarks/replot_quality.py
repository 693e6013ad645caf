"""Draw the quality plots (net win rate with its 95% interval, per group) of a finished
``pice bench`` run from its ``results.json``: for runs written before the bench drew them.

    python benchmarks/replot_quality.py benchmarks/results/quality-v2/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pice_bench.plots import write_plots
from pice_bench.records import JudgeRecord, Mode
from pice_bench.results import BenchResults


def judge_record(raw: dict[str, Any]) -> JudgeRecord:
    fields = dict(raw)
    fields["candidate"], fields["baseline"] = Mode(raw["candidate"]), Mode(raw["baseline"])
    for key in ("scores_candidate_first", "scores_candidate_second"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    return JudgeRecord(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    # Only the judgments: the latency plots of the run were drawn when it ended.
    results = BenchResults(config={"seed": data["config"].get("seed", 0)})
    results.judgments = [judge_record(j) for j in data["judgments"]]
    for path in write_plots(results, args.results.parent):
        print(path)


if __name__ == "__main__":
    main()
