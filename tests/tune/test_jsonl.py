"""Reading the append-only JSONL files of the resumable steps."""

from __future__ import annotations

from pathlib import Path

from pice_tune.jsonl import read_rows


def test_a_file_not_written_yet_has_no_rows(tmp_path: Path) -> None:
    assert read_rows(tmp_path / "absent.jsonl") == []


def test_a_line_cut_by_an_interruption_is_left_out_and_the_rest_kept_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b"}\n[1, 2]\n{"id": "c", "te')
    assert read_rows(path) == [{"id": "a"}, {"id": "b"}]
