"""``pice edge bench`` end to end at a toy size, against the real Qwen2.5-0.5B."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from edge_agent.bench import add_bench_arguments, run_from_args

pytestmark = pytest.mark.model


def test_edge_bench_writes_every_row_and_the_speedups(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    out_json = tmp_path / "edge.json"
    args = parser.parse_args(
        [
            "--threads",
            "1",
            "--points",
            "2",
            "--max-tokens",
            "4",
            "--chats",
            "0",
            "--raw-sequences",
            "2",
            "--out",
            str(out_json),
        ]
    )
    printed = io.StringIO()
    assert run_from_args(args, printed) == 0

    data = json.loads(out_json.read_text())
    rows = {(r["scenario"], r["size"], r["mode"]): r for r in data["rows"]}
    assert set(rows) == {
        ("expand", 2, "batched"),
        ("expand", 2, "one-at-a-time"),
        ("raw-decode", 2, "batched"),
        ("raw-decode", 2, "one-at-a-time"),
    }
    assert rows[("raw-decode", 2, "batched")]["tokens"] == 8  # 2 sequences x 4 steps
    assert rows[("raw-decode", 2, "one-at-a-time")]["tokens"] == 4
    assert all(r["tokens_per_second"] > 0 for r in data["rows"])
    assert set(data["speedups"]) == {"expand-2", "raw-decode-2"}
    assert "| raw-decode | 2 | batched |" in printed.getvalue()
