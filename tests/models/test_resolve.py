"""Resolving model specs: local paths, hub ids, unknown names, and the real bundled model."""

from __future__ import annotations

import re
import socket
import sys
import time
from pathlib import Path

import pytest

from pice.errors import ModelProvisioningError
from pice.models.catalog import BUNDLED_MODELS
from pice.models.provision import verify_file
from pice.models.registry import default_cache_dir, resolve_model


def test_local_gguf_path_resolves_to_itself(tmp_path: Path) -> None:
    model = tmp_path / "my-model.Q4.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00rest")
    resolved = resolve_model(str(model), cache_dir=tmp_path / "cache")
    assert resolved.path == model
    assert resolved.name == "my-model.Q4"


def test_local_file_without_gguf_magic_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "weights.gguf"
    model.write_bytes(b"PK\x03\x04 a zip, not a gguf")
    with pytest.raises(ModelProvisioningError, match="not a GGUF file"):
        resolve_model(str(model), cache_dir=tmp_path)


def test_missing_local_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.gguf"), cache_dir=tmp_path)


def test_unknown_name_lists_the_bundled_models(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match=re.escape("qwen2.5-coder-0.5b-instruct")):
        resolve_model("gpt-17", cache_dir=tmp_path)


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICE_MODEL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("PICE_MODEL_CACHE")
    assert default_cache_dir() == Path.home() / ".cache/pice/models"


def test_hub_spec_without_huggingface_hub_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ModelProvisioningError, match=r"pice\[hub\]"):
        resolve_model("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf", cache_dir=tmp_path)


def test_unreachable_hub_fails_fast_and_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    with socket.socket() as sock:  # a port nobody listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PICE_HUB_TIMEOUT", "3")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(ModelProvisioningError, match="unreachable") as info:
        resolve_model("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf", cache_dir=tmp_path)
    assert time.monotonic() - started < 5
    assert "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in info.value.message


def test_offline_hub_mode_refuses_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelProvisioningError, match="HF_HUB_OFFLINE"):
        resolve_model("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf", cache_dir=tmp_path)


def test_malformed_hub_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match=re.escape("hf:ORG/REPO/FILE.gguf")):
        resolve_model("hf:only-a-repo", cache_dir=tmp_path)


@pytest.mark.model
def test_real_bundled_small_model_resolves_and_verifies() -> None:
    model = BUNDLED_MODELS["qwen2.5-coder-0.5b-instruct"]
    resolved = resolve_model(model.name, pull=False)
    assert resolved.path.stat().st_size == 491_400_064
    assert resolved.path.read_bytes()[:4] == b"GGUF"
    assert verify_file(resolved.path, sha256=model.sha256, size=model.size)
