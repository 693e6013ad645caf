"""Append-only JSONL files that a resumable step writes one row at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every complete row of ``path``, in file order; none if the file does not exist yet.

    A line that does not parse as a JSON object (the last one, cut by an interrupted run) is
    left out, so whatever it held is done again by the next run.
    """
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
