"""``pice edge bench`` end to end at a toy size, against the real Qwen2.5-Coder-0.5B."""

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
            "--rounds",
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
    # 2 rounds x 2 sequences x 4 steps, and 2 rounds x 1 sequence x 4 steps
    assert rows[("raw-decode", 2, "batched")]["tokens"] == 16
    assert rows[("raw-decode", 2, "one-at-a-time")]["tokens"] == 8
    assert len(rows[("raw-decode", 2, "batched")]["round_speedups"]) == 2
    assert rows[("expand", 2, "batched")]["round_speedups"] == []  # expansions: one round
    assert all(r["tokens_per_second"] > 0 for r in data["rows"])
    assert set(data["speedups"]) == {"expand-2", "raw-decode-2"}
    assert "| raw-decode | 2 | batched |" in printed.getvalue()


def test_edge_bench_chats_alternate_modes_for_each_round(tmp_path: Path) -> None:
    """The chat part starts a real ``pice edge serve`` and measures both modes every round."""
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    out_json = tmp_path / "edge.json"
    args = parser.parse_args(
        [
            *("--threads", "1", "--points", "1", "--max-tokens", "3", "--chats", "2"),
            *("--raw-sequences", "0", "--rounds", "2", "--out", str(out_json)),
        ]
    )
    printed = io.StringIO()
    assert run_from_args(args, printed) == 0

    data = json.loads(out_json.read_text())
    rows = {(r["scenario"], r["size"], r["mode"]): r for r in data["rows"]}
    concurrent, sequential = rows[("chat", 2, "concurrent")], rows[("chat", 2, "sequential")]
    # Each round: 2 chats of at most 3 tokens per mode.
    assert 2 <= concurrent["tokens"] <= 12
    assert 2 <= sequential["tokens"] <= 12
    assert len(concurrent["round_speedups"]) == 2
    assert all(g > 0 for g in concurrent["round_speedups"])
    assert printed.getvalue().count("chat round") == 2
    assert "chat-2" in data["speedups"]
