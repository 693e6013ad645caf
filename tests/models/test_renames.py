"""The Qwen2.5-Coder rename: old names still resolve, with a warning, to the same cache files."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from pice.cloud import convert_gguf
from pice.cloud.vllm import checkpoint_dir, ensure_checkpoint
from pice.models import catalog
from pice.models.catalog import BUNDLED_MODELS, DEPRECATED_NAMES, DERIVED_MODELS
from pice.models.provision import hash_file, write_marker
from pice.models.registry import resolve_model
from tests.models.test_cli import run

# Written out rather than read from the catalog: this is the contract with existing users.
RENAMES = {
    "qwen2.5-0.5b-instruct": "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-1.5b-instruct": "qwen2.5-coder-1.5b-instruct",
    "qwen2.5-0.5b-instruct-q8_0": "qwen2.5-coder-0.5b-instruct-q8_0",
}


@pytest.fixture
def old_cache(tmp_path: Path) -> Path:
    """A cache filled before the rename: every file and marker under its old name."""
    for old, new in RENAMES.items():
        path = tmp_path / f"{old}.gguf"
        path.write_bytes(b"GGUF provisioned by the previous release " + old.encode())
        if new in DERIVED_MODELS:
            write_marker(path, hash_file(path), DERIVED_MODELS[new].recipe)
        else:
            write_marker(path, BUNDLED_MODELS[new].sha256)
    return tmp_path


def test_every_renamed_model_has_its_old_name_as_a_deprecated_alias() -> None:
    assert dict(DEPRECATED_NAMES) == RENAMES
    for new in RENAMES.values():
        model = BUNDLED_MODELS.get(new) or DERIVED_MODELS[new]
        assert "Qwen2.5-Coder" in model.description


@pytest.mark.parametrize(("old", "new"), RENAMES.items())
def test_an_old_name_resolves_to_the_new_model_and_the_same_file(
    old_cache: Path, old: str, new: str
) -> None:
    current = resolve_model(new, pull=False, cache_dir=old_cache)  # no warning: would raise
    with pytest.warns(DeprecationWarning, match=re.escape(repr(new))) as record:
        renamed = resolve_model(old, pull=False, cache_dir=old_cache)
    assert renamed == current
    assert (renamed.name, renamed.aliases) == (new, (old,))
    # The file kept its old name, so nothing is downloaded or requantised again.
    assert renamed.path == old_cache / f"{old}.gguf"
    # stacklevel: the warning points at the code that named the model, i.e. this test.
    assert [warning.filename for warning in record] == [__file__]


def test_an_old_name_is_logged_once_per_process(
    old_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog._log_rename.cache_clear()
    caplog.set_level(logging.WARNING, logger=catalog.__name__)
    for _ in range(2):
        with pytest.warns(DeprecationWarning, match="qwen2.5-coder-0.5b-instruct"):
            resolve_model("qwen2.5-0.5b-instruct", pull=False, cache_dir=old_cache)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "model name 'qwen2.5-0.5b-instruct' is deprecated; "
        "use 'qwen2.5-coder-0.5b-instruct' (same model, same file)"
    ]


def test_models_list_prints_the_new_names(
    old_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("models", "--cache-dir", str(old_cache), "list") == 0
    table, _, notes = capsys.readouterr().out.partition("\n\n")
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    for old, new in RENAMES.items():
        assert old not in rows
        assert "verified" in rows[new].split()  # found in the cache filled under the old name
        assert f"{old} -> {new}" in notes


def test_pull_and_verify_accept_an_old_name(
    old_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(DeprecationWarning, match="qwen2.5-coder-1.5b-instruct"):
        assert run("models", "--cache-dir", str(old_cache), "pull", "qwen2.5-1.5b-instruct") == 0
    assert capsys.readouterr().out.startswith("qwen2.5-coder-1.5b-instruct: verified ")
    with pytest.warns(DeprecationWarning, match="qwen2.5-coder-0.5b-instruct-q8_0"):
        code = run("models", "--cache-dir", str(old_cache), "verify", "qwen2.5-0.5b-instruct-q8_0")
    assert code == 0
    assert capsys.readouterr().out.startswith("qwen2.5-coder-0.5b-instruct-q8_0: ok ")


def test_a_vllm_checkpoint_converted_under_the_old_name_is_reused(old_cache: Path) -> None:
    model = resolve_model("qwen2.5-coder-0.5b-instruct", pull=False, cache_dir=old_cache)
    converted = checkpoint_dir("qwen2.5-0.5b-instruct", old_cache)
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}")
    stat = model.path.stat()
    stamp = {"source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}
    (converted / convert_gguf.STAMP).write_text(json.dumps(stamp))
    # No vLLM environment exists here: a conversion attempt would fail.
    assert ensure_checkpoint(model, old_cache / "no-venv", old_cache) == converted
