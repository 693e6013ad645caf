"""``pice tune export --merged``: the adapter folded into the edge model's weights.

The arithmetic is checked here against what llama.cpp computes for an adapter at run time; the
GGUF rewrite itself runs in the tuning environment (checked by hand against llama.cpp, see
docs/fine-tuning.md "Speed of an adapter").
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pice_cli.main import main as pice_main
from pice_tune import steps, worker


def test_a_merged_weight_computes_what_the_adapter_adds_at_run_time() -> None:
    rng = np.random.default_rng(0)
    n_in, n_out, rank, alpha, scale = 12, 7, 4, 8.0, 0.5
    weight = rng.standard_normal((n_out, n_in)).astype(np.float32)
    a = rng.standard_normal((rank, n_in)).astype(np.float32)
    b = rng.standard_normal((n_out, rank)).astype(np.float32)
    x = rng.standard_normal((n_in, 3)).astype(np.float32)
    factor = scale * alpha / rank

    # llama.cpp: W x + scale * (alpha / rank) * B (A x), for every token column of x.
    at_run_time = weight @ x + factor * (b @ (a @ x))
    merged = worker.merged_weight(weight, a, b, factor)
    assert merged.shape == weight.shape
    np.testing.assert_allclose(merged @ x, at_run_time, rtol=1e-5, atol=1e-5)
    assert not np.allclose(merged @ x, weight @ x)  # the adapter does change the output


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / steps.RECIPE_FILE).write_text(
        json.dumps(
            {
                "recipe": {"rank": 16},
                "data": "data-v1.jsonl",
                "data_sha256": "d" * 64,
                "base_gguf_sha256": "b" * 64,
            }
        )
    )
    (run / worker.SUMMARY_FILE).write_text(json.dumps({"steps": 2}))
    return run


def test_export_merged_runs_the_workers_merge_and_records_what_it_wrote(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "edge-q8_0.gguf"
    model.write_bytes(b"base")
    calls: list[tuple[str, ...]] = []

    def fake_worker(venv: Path, *args: str) -> str:
        calls.append(args)
        Path(args[args.index("--out") + 1]).write_bytes(b"merged")
        return json.dumps({"merged_weights": 168, "scale": 0.5})

    monkeypatch.setattr(steps, "find_tune_venv", lambda venv: tmp_path / "venv")
    monkeypatch.setattr(steps, "resolve_model", lambda name: SimpleNamespace(name=name, path=model))
    monkeypatch.setattr(steps, "run_worker", fake_worker)

    out = tmp_path / "merged.gguf"
    meta = steps.run_export(run_dir, out, "edge-q8_0", merged=True, scale=0.5)
    (argv,) = calls
    assert argv[0] == "merge"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags == {
        "--adapter-dir": str(run_dir / "adapter"),
        "--base-gguf": str(model),
        "--out": str(out),
        "--scale": "0.5",
    }
    assert meta["format"].startswith("merged GGUF (edge-q8_0 + adapter at scale 0.5")
    assert meta["export"] == {"merged_weights": 168, "scale": 0.5}
    assert json.loads(steps.adapter_meta_path(out).read_text()) == meta

    # Without --merged: the adapter, as before.
    calls.clear()
    steps.run_export(run_dir, tmp_path / "adapter.gguf", "edge-q8_0")
    assert calls[0][0] == "export"
    assert "--scale" not in calls[0]


def test_the_cli_flag_writes_merged_gguf_in_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_export(run: Path, out: Path, edge_model: str, **kwargs: Any) -> dict[str, Any]:
        seen.update(run=run, out=out, **kwargs)
        return {}

    monkeypatch.setattr(steps, "run_export", fake_export)
    work = tmp_path / "w"
    assert pice_main(["tune", "--workdir", str(work), "export", "--merged", "--scale", "2"]) == 0
    assert seen["out"] == work / "merged.gguf"
    assert seen["merged"] is True
    assert seen["scale"] == 2.0
    assert pice_main(["tune", "--workdir", str(work), "export"]) == 0
    assert seen["out"] == work / "adapter.gguf"
    assert seen["merged"] is False
