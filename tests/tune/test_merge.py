"""``pice tune export --merged``: the adapter folded into the edge model's weights.

The worker (tuning environment) writes the adapter GGUF; the fold is the edge's own
(:mod:`edge_agent.engine.lora_merge`, tested in tests/edge/test_lora_merge.py), run here on a
toy model. The real model's merge against llama.cpp: tests/tune/test_pipeline_real.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gguf
import numpy as np
import pytest

from pice.models.provision import hash_file
from pice_cli.main import main as pice_main
from pice_tune import steps, worker
from tests.support.gguf_files import write_lora, write_model


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


def test_export_merged_folds_the_workers_adapter_and_records_what_it_wrote(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model(
        tmp_path / "edge-q8_0.gguf",
        "qwen2",
        [("blk.0.attn_q.weight", np.full((16, 32), 0.05), gguf.GGMLQuantizationType.Q8_0)],
    )
    calls: list[tuple[str, ...]] = []

    def fake_worker(venv: Path, *args: str) -> str:
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        write_lora(out, "qwen2", {"blk.0.attn_q.weight": (16, 32)}, rank=2, alpha=4.0)
        return json.dumps({"architecture": "qwen2", "rank": 2, "alpha": 4.0, "pairs": 1})

    monkeypatch.setattr(steps, "find_tune_venv", lambda venv: tmp_path / "venv")
    monkeypatch.setattr(steps, "resolve_model", lambda name: SimpleNamespace(name=name, path=model))
    monkeypatch.setattr(steps, "run_worker", fake_worker)

    out = tmp_path / "merged.gguf"
    meta = steps.run_export(run_dir, out, "edge-q8_0", merged=True, scale=0.5)
    (argv,) = calls
    assert argv[0] == "export"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags["--adapter-dir"] == str(run_dir / "adapter")
    assert flags["--base-gguf"] == str(model)
    assert not Path(flags["--out"]).exists()  # a scratch adapter, gone with its directory
    assert meta["format"].startswith("merged GGUF (edge-q8_0 + adapter at scale 0.5")
    export = meta["export"]
    assert (export["merged_weights"], export["rank"], export["scale"]) == (1, 2, 0.5)
    assert export["largest_change"] > 0
    assert meta["adapter_sha256"] == hash_file(out)
    merged = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}["blk.0.attn_q.weight"]
    assert merged.tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert json.loads(steps.adapter_meta_path(out).read_text()) == meta

    # Without --merged: the adapter, as before.
    calls.clear()
    steps.run_export(run_dir, tmp_path / "adapter.gguf", "edge-q8_0")
    assert calls[0][0] == "export"
    assert calls[0][calls[0].index("--out") + 1] == str(tmp_path / "adapter.gguf")


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
