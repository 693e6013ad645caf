"""``pice models`` subcommands, run in-process against a scratch cache."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pice.models import cli
from pice.models.catalog import BUNDLED_MODELS, DERIVED_MODELS
from pice_cli.main import main as pice_main


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


def test_list_shows_every_bundled_and_derived_model_and_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("models", "--cache-dir", str(tmp_path), "list") == 0
    out = capsys.readouterr().out
    for name in [*BUNDLED_MODELS, *DERIVED_MODELS]:
        assert name in out
    assert out.count("missing") == len(BUNDLED_MODELS) + len(DERIVED_MODELS)


def test_a_derived_file_without_its_marker_is_unverified_and_fails_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "qwen2.5-coder-0.5b-instruct-q8_0"
    DERIVED_MODELS[name].path_in(tmp_path).write_bytes(b"GGUF placed by hand")
    assert run("models", "--cache-dir", str(tmp_path), "list") == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(name))
    assert "unverified" in line
    assert run("models", "--cache-dir", str(tmp_path), "verify", name) == 1
    assert "CORRUPT" in capsys.readouterr().out


def test_verify_reports_a_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gemma-3-270m.gguf").write_bytes(b"GGUF too short")
    assert run("models", "--cache-dir", str(tmp_path), "verify", "gemma-3-270m") == 1
    assert "CORRUPT" in capsys.readouterr().out


def test_path_of_a_missing_model_fails_without_pulling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through `pice` itself: the command's error is its message on stderr and exit 1.
    assert pice_main(["models", "--cache-dir", str(tmp_path), "path", "gemma-3-270m"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "pice models pull gemma-3-270m" in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.gguf"))
