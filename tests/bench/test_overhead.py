"""``benchmarks/overhead.py --quick`` runs end to end against the fake upstream and PICE.

A smoke test of the harness (processes start, every request succeeds, the JSON has every
scenario); it asserts no timings (speed targets live in the benchmark's own output).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


def test_quick_overhead_run_measures_pice_and_direct(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--targets", "direct,pice", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads(out.read_text())["results"]
    assert sorted(results) == ["c1-json", "c1-stream", "c16-json", "c16-stream"]
    for by_target in results.values():
        assert sorted(by_target) == ["direct", "pice"]
        for summary in by_target.values():
            assert summary["errors"] == 0, summary["first_errors"]
            assert summary["requests"] == 50
            assert summary["req_per_s"] > 0
        assert by_target["direct"]["added_p50_ms"] == 0
    assert "added p50" in proc.stdout
