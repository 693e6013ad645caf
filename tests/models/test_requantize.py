"""Derived models: a bundled GGUF requantised locally, marked, and rebuilt when it changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pice.errors import ModelProvisioningError
from pice.models import requantize
from pice.models.catalog import BUNDLED_MODELS, DERIVED_MODELS
from pice.models.provision import hash_file, marker_path, partial_path, read_marker
from pice.models.requantize import derive

VARIANT = DERIVED_MODELS["qwen2.5-coder-0.5b-instruct-q8_0"]


def _fake_source(tmp_path: Path, content: bytes) -> Path:
    source = tmp_path / "source.gguf"
    source.write_bytes(content)
    return source


def test_recipe_names_the_format_and_the_pinned_source() -> None:
    assert VARIANT.source is BUNDLED_MODELS["qwen2.5-coder-0.5b-instruct"]
    assert VARIANT.recipe == f"q8_0 from sha256:{VARIANT.source.sha256}"


def test_failed_requantisation_leaves_nothing_behind(tmp_path: Path) -> None:
    source = _fake_source(tmp_path, b"GGUF but not really a model")
    cache = tmp_path / "cache"
    with pytest.raises(ModelProvisioningError, match="could not requantise"):
        derive(VARIANT, lambda: source, cache, progress=False)
    path = VARIANT.path_in(cache)
    assert not path.exists()
    assert not partial_path(path).exists()
    assert not marker_path(path).exists()


def test_missing_derived_model_without_pull_says_how_to_pull(tmp_path: Path) -> None:
    source = _fake_source(tmp_path, b"unused")
    with pytest.raises(ModelProvisioningError, match=f"pice models pull {VARIANT.name}"):
        derive(VARIANT, lambda: source, tmp_path / "cache", pull=False, progress=False)


def test_without_llama_cpp_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ModelProvisioningError, match=r"pice\[edge\]"):
        requantize.requantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "q8_0")


def test_missing_source_is_a_provisioning_error(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="no such file"):
        requantize.requantize(tmp_path / "absent.gguf", tmp_path / "out.gguf", "q8_0")
    assert not (tmp_path / "out.gguf").exists()


def test_unknown_weight_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="q8_0"):
        requantize.requantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "q3_weird")


# -- against the real 0.5B model (one derivation per module, ~5 s) ----------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, small_model_path: Path) -> Path:
    cache = tmp_path_factory.mktemp("derived")
    derive(VARIANT, lambda: small_model_path, cache, progress=False)
    return cache


def _count_requantisations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = requantize.requantize

    def counting(source: Path, dest: Path, weight_format: str, **kwargs: object) -> None:
        calls.append(weight_format)
        real(source, dest, weight_format, threads=None, approx_size=0, progress=False)

    monkeypatch.setattr(requantize, "requantize", counting)
    return calls


@pytest.mark.model
def test_derived_file_is_a_q8_0_gguf_marked_with_its_recipe(built: Path) -> None:
    from edge_agent.engine.llama import LlamaModel

    path = VARIANT.path_in(built)
    marker = read_marker(path)
    assert marker is not None
    assert marker.recipe == VARIANT.recipe
    assert marker.sha256 == hash_file(path)
    model = LlamaModel(path)
    try:
        assert model.meta("general.file_type") == "7"  # LLAMA_FTYPE_MOSTLY_Q8_0
    finally:
        model.close()


@pytest.mark.model
def test_a_marked_file_is_used_without_requantising(
    built: Path, small_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_requantisations(monkeypatch)
    assert derive(VARIANT, lambda: small_model_path, built, pull=False, progress=False).exists()
    assert derive(VARIANT, lambda: small_model_path, built, progress=False).exists()
    assert calls == []


@pytest.mark.model
def test_a_changed_file_is_refused_without_pull_and_rebuilt_with_pull(
    built: Path, small_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = VARIANT.path_in(built)
    good = read_marker(path)
    assert good is not None
    with path.open("r+b") as handle:  # flip one byte in the middle
        handle.seek(good.size // 2)
        byte = handle.read(1)
        handle.seek(good.size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelProvisioningError, match="out of date"):
        derive(VARIANT, lambda: small_model_path, built, pull=False, progress=False)

    calls = _count_requantisations(monkeypatch)
    derive(VARIANT, lambda: small_model_path, built, progress=False)
    assert calls == ["q8_0"]  # the rehash found the flipped byte
    assert hash_file(path) == good.sha256


@pytest.mark.model
def test_a_marker_from_another_source_is_not_trusted(
    built: Path, small_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = VARIANT.path_in(built)
    data = json.loads(marker_path(path).read_text())
    marker_path(path).write_text(json.dumps(data | {"recipe": "q8_0 from sha256:0000"}))
    with pytest.raises(ModelProvisioningError, match="out of date"):
        derive(VARIANT, lambda: small_model_path, built, pull=False, progress=False)

    calls = _count_requantisations(monkeypatch)
    derive(VARIANT, lambda: small_model_path, built, progress=False)
    assert calls == ["q8_0"]
    marker = read_marker(path)
    assert marker is not None
    assert marker.recipe == VARIANT.recipe
