"""``derive_file``: the one write-then-rename-then-mark sequence behind every derived file
(a requantised GGUF, the router's quantised encoder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pice.models.provision import (
    derive_file,
    is_derived,
    marker_path,
    partial_path,
    read_marker,
)

CONTENT = b"derived bytes " * 1000


class Maker:
    """Writes ``content`` to the partial path it is given, counting its calls."""

    def __init__(self, content: bytes = CONTENT) -> None:
        self.content = content
        self.calls: list[Path] = []
        # What was at the partial path when a call began (a crash's leftover must be gone).
        self.found_partial: list[bool] = []

    def __call__(self, partial: Path) -> None:
        self.calls.append(partial)
        self.found_partial.append(partial.exists())
        partial.write_bytes(self.content)


def test_the_marker_records_the_files_hash_and_recipe(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    make = Maker()
    assert derive_file(path, "recipe A", make) == path
    assert make.calls == [partial_path(path)]
    assert path.read_bytes() == CONTENT
    assert not partial_path(path).exists()
    marker = read_marker(path)
    assert marker is not None
    assert marker.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert marker.size == len(CONTENT)
    assert marker.recipe == "recipe A"
    assert is_derived(path, "recipe A")
    assert not is_derived(path, "recipe B")


def test_a_file_marked_for_the_recipe_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    make = Maker()
    derive_file(path, "recipe A", make)
    before = read_marker(path)
    assert derive_file(path, "recipe A", make) == path
    assert len(make.calls) == 1, "a file marked for its recipe is not made again"
    assert read_marker(path) == before


def test_another_recipe_or_a_changed_file_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    make = Maker()
    derive_file(path, "recipe A", make)
    derive_file(path, "recipe B", Maker(b"made by B"))
    assert path.read_bytes() == b"made by B"
    marker = read_marker(path)
    assert marker is not None
    assert marker.recipe == "recipe B"

    path.write_bytes(b"edited by hand")  # size and mtime no longer what the marker names
    assert not is_derived(path, "recipe B")
    derive_file(path, "recipe B", make)
    assert path.read_bytes() == CONTENT


@pytest.mark.parametrize("failure", [RuntimeError("quantiser failed"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_no_file(tmp_path: Path, failure: BaseException) -> None:
    path = tmp_path / "model.bin"
    derive_file(path, "recipe A", Maker())  # an older file, of another recipe

    def half_then_fail(partial: Path) -> None:
        partial.write_bytes(CONTENT[: len(CONTENT) // 2])
        raise failure

    with pytest.raises(type(failure)):
        derive_file(path, "recipe B", half_then_fail)
    assert not path.exists()
    assert not partial_path(path).exists()
    assert not marker_path(path).exists()


def test_a_partial_left_by_a_crash_is_never_used_and_is_started_over(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    partial_path(path).write_bytes(b"what a killed process had written")
    assert not is_derived(path, "recipe A")
    make = Maker()
    derive_file(path, "recipe A", make)
    assert make.found_partial == [False]
    assert path.read_bytes() == CONTENT
