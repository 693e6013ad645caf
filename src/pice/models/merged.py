"""The merged models an edge derives with ``--lora-merge``: where they live, when each was last
used, and pruning the ones no edge uses any more.

Each adapter, base model and scale an edge has served merged leaves one full copy of the model
in ``<cache>/merged/`` (675 MB for the 0.5B Q8_0), kept so a restart does not merge again.
Every start that serves a file touches its marker (:func:`mark_used`; the marker's contents,
which name the file's size and mtime, are unchanged), so the marker's own mtime is the file's
last use. Pruning takes the same per-file lock as the merge, so it never removes a file being
written; a file an edge is serving may be removed (the running edge keeps its open copy) and
is merged again at that edge's next start.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from pice.models.provision import (
    PARTIAL_SUFFIX,
    cache_lock,
    marker_matches,
    marker_path,
    remove_marker,
)

MERGED_DIR = "merged"


@dataclass(frozen=True)
class MergedFile:
    path: Path
    size: int  # bytes on disk: the model, or what a merge that never finished left
    last_used: float  # seconds since the epoch: the marker's mtime, else the file's
    complete: bool  # a marked file; False: a merge that never finished (``.partial``)


def merged_dir(cache_dir: Path) -> Path:
    return cache_dir / MERGED_DIR


def mark_used(path: Path) -> None:
    """Record that ``path`` (a merged model, marked) is served now."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(marker_path(path))


def merged_files(cache_dir: Path) -> list[MergedFile]:
    """Every merged model in ``cache_dir`` and every merge left unfinished, oldest use first."""
    directory = merged_dir(cache_dir)
    if not directory.is_dir():
        return []
    found: list[MergedFile] = []
    for path in directory.glob("*.gguf"):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile (another prune)
            found.append(_describe(path))
    for partial in directory.glob(f"*.gguf{PARTIAL_SUFFIX}"):
        path = partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))
        with contextlib.suppress(FileNotFoundError):
            if not path.exists():
                stat = partial.stat()
                found.append(MergedFile(path, stat.st_size, stat.st_mtime, complete=False))
    return sorted(found, key=lambda merged: merged.last_used)


def _describe(path: Path) -> MergedFile:
    complete = marker_matches(path)
    used = (marker_path(path) if complete else path).stat().st_mtime
    return MergedFile(path, path.stat().st_size, used, complete)


def prune_merged(
    cache_dir: Path, *, unused_seconds: float, now: float, dry_run: bool = False
) -> list[MergedFile]:
    """Remove the merged models (and unfinished merges) not used for ``unused_seconds``;
    what was (or, with ``dry_run``, would be) removed."""
    directory = merged_dir(cache_dir)
    removed: list[MergedFile] = []
    for merged in merged_files(cache_dir):
        if now - merged.last_used < unused_seconds:
            continue
        if dry_run:
            removed.append(merged)
            continue
        with cache_lock(directory, merged.path.stem):
            # Looked at again under the merge's lock: an edge may have just served it.
            if merged.path.exists() and now - _describe(merged.path).last_used < unused_seconds:
                continue
            remove_marker(merged.path)  # first: no marker ever names a missing file
            merged.path.unlink(missing_ok=True)
            merged.path.with_name(merged.path.name + PARTIAL_SUFFIX).unlink(missing_ok=True)
        removed.append(merged)
    return removed
