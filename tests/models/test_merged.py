"""The merged-model cache (``--lora-merge``'s files): listed with their last use, pruned by it."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pice.models.merged import mark_used, merged_dir, merged_files, prune_merged
from pice.models.provision import cache_lock, derive_file, marker_path
from tests.models.test_cli import run

DAY = 86400.0


def merged(cache: Path, stem: str, used_days_ago: float, now: float) -> Path:
    """A marked merged file whose last use was ``used_days_ago``."""
    path = merged_dir(cache) / f"{stem}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    derive_file(path, f"pice-lora-merge-1 {stem}", lambda partial: partial.write_bytes(b"G" * 64))
    when = now - used_days_ago * DAY
    os.utime(marker_path(path), (when, when))
    return path


def test_files_are_listed_oldest_use_first_and_a_use_refreshes_one(tmp_path: Path) -> None:
    now = os.path.getmtime(tmp_path)
    old = merged(tmp_path, "m+old-1", 40, now)
    new = merged(tmp_path, "m+new-2", 1, now)
    assert [f.path for f in merged_files(tmp_path)] == [old, new]
    assert all(f.complete and f.size == 64 for f in merged_files(tmp_path))
    mark_used(old)
    assert [f.path for f in merged_files(tmp_path)] == [new, old]


def test_pruning_removes_what_was_not_used_for_the_days_given_and_unfinished_merges(
    tmp_path: Path,
) -> None:
    now = os.path.getmtime(tmp_path) + 100 * DAY
    old = merged(tmp_path, "m+old-1", 40, now)
    new = merged(tmp_path, "m+new-2", 1, now)
    crashed = merged_dir(tmp_path) / "m+crashed-3.gguf.partial"
    crashed.write_bytes(b"G" * 10)
    os.utime(crashed, (now - 50 * DAY, now - 50 * DAY))

    planned = prune_merged(tmp_path, unused_seconds=30 * DAY, now=now, dry_run=True)
    assert sorted(p.path.name for p in planned) == ["m+crashed-3.gguf", "m+old-1.gguf"]
    assert old.exists(), "a dry run removes nothing"
    assert crashed.exists()

    removed = prune_merged(tmp_path, unused_seconds=30 * DAY, now=now)
    assert [p.path for p in removed] == [p.path for p in planned]
    assert not old.exists()
    assert not marker_path(old).exists()
    assert not crashed.exists()
    assert new.exists()
    assert marker_path(new).exists()
    assert [p.path for p in prune_merged(tmp_path, unused_seconds=0, now=now)] == [new]
    assert merged_files(tmp_path) == []


def test_a_file_used_while_the_prune_waited_for_its_lock_is_kept(tmp_path: Path) -> None:
    now = os.path.getmtime(tmp_path) + 100 * DAY
    path = merged(tmp_path, "m+busy-1", 40, now)
    with ThreadPoolExecutor(1) as pool:
        # An edge holds the file's lock (merging or starting with it) while the prune lists
        # the file as old and waits; the edge marks its use, then lets go.
        with cache_lock(merged_dir(tmp_path), path.stem):
            pruning = pool.submit(prune_merged, tmp_path, unused_seconds=30 * DAY, now=now)
            time.sleep(0.3)
            os.utime(marker_path(path), (now, now))
        assert pruning.result(timeout=10) == []
    assert path.exists()


def test_the_cli_lists_and_prunes_merged_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("models", "--cache-dir", str(tmp_path), "list") == 0
    assert "merged models" not in capsys.readouterr().out, "no section without merged files"
    path = merged(tmp_path, "m+a-1", 3, time.time())
    assert run("models", "--cache-dir", str(tmp_path), "list") == 0
    out = capsys.readouterr().out
    assert "m+a-1.gguf  0 MiB  last used 3 days ago" in out
    args = ("models", "--cache-dir", str(tmp_path), "prune-merged")
    assert run(*args, "--unused-days", "5") == 0
    assert capsys.readouterr().out.strip() == "removed 0 merged model(s), 0 MiB"
    assert run(*args, "--unused-days", "2", "--dry-run") == 0
    assert path.exists()
    assert f"would remove {path}" in capsys.readouterr().out
    assert run(*args) == 0
    assert not path.exists()
    assert "removed 1 merged model(s)" in capsys.readouterr().out
    assert run(*args, "--unused-days", "-1") == 2
