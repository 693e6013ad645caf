"""Fetch a GGUF file from the Hugging Face Hub (the optional ``hub`` extra).

A spec ``hf:ORG/REPO/PATH/IN/REPO.gguf`` names one file of one model repository. The hub is
often unreachable where PICE runs (edge sites, air-gapped labs), so every failure becomes one
:class:`ModelProvisioningError` that says what to do, and the connection attempt is bounded by a
short timeout instead of hanging a start-up.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pice.errors import ModelProvisioningError

logger = logging.getLogger(__name__)

HUB_PREFIX = "hf:"
_DEFAULT_ENDPOINT = "https://huggingface.co"
_DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str

    @classmethod
    def parse(cls, spec: str) -> HubFile:
        body = spec.removeprefix(HUB_PREFIX)
        org, _, rest = body.partition("/")
        repo, _, filename = rest.partition("/")
        if not (org and repo and filename):
            raise ModelProvisioningError(
                f"hub model spec {spec!r} must look like hf:ORG/REPO/FILE.gguf"
            )
        return cls(repo_id=f"{org}/{repo}", filename=filename)


def fetch_hub_file(spec: str, cache_dir: Path, *, timeout_s: float | None = None) -> Path:
    """Download (or find in the hub cache) the file named by ``spec``; return its local path."""
    target = HubFile.parse(spec)
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ModelProvisioningError(
            f"{spec!r} is a Hugging Face Hub model, but huggingface_hub is not installed; "
            "install it with `pip install 'pice[hub]'` or point to a local GGUF file"
        ) from exc
    timeout = timeout_s if timeout_s is not None else _timeout_from_env()
    # Read at call time so HF_ENDPOINT set after import (mirrors, tests) is honoured.
    endpoint = os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT
    download = functools.partial(
        huggingface_hub.hf_hub_download,
        repo_id=target.repo_id,
        filename=target.filename,
        cache_dir=str(cache_dir / "hub"),
        endpoint=endpoint,
    )
    try:
        # A file fetched before needs no network at all.
        return Path(download(local_files_only=True))
    # The hub client raises from several layers (its own errors, requests/httpx, OSError)
    # depending on its version; all of them mean the same thing to a caller here.
    except Exception:
        logger.debug("%s is not in the local hub cache", spec)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise ModelProvisioningError(
            f"{spec!r} is not in the local hub cache and HF_HUB_OFFLINE is set; "
            "download the GGUF elsewhere and pass its local path instead"
        )
    # The hub client retries a failed connection with backoff for half a minute; one bounded
    # connection attempt first turns an unreachable hub into a prompt, clear error.
    _probe(endpoint, timeout, target)
    try:
        path = download(etag_timeout=timeout)
    except Exception as exc:
        raise _unreachable(target, exc) from exc
    logger.info("hub file %s is at %s", spec, path)
    return Path(path)


def _timeout_from_env() -> float:
    raw = os.environ.get("PICE_HUB_TIMEOUT")
    try:
        return float(raw) if raw else _DEFAULT_TIMEOUT_S
    except ValueError:
        return _DEFAULT_TIMEOUT_S


def _probe(endpoint: str, timeout: float, target: HubFile) -> None:
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            pass
    except OSError as exc:
        raise _unreachable(target, exc) from exc


def _unreachable(target: HubFile, exc: BaseException) -> ModelProvisioningError:
    return ModelProvisioningError(
        f"could not fetch {target.filename} from Hugging Face Hub repo {target.repo_id} "
        f"({type(exc).__name__}: {exc}). The hub may be unreachable from this machine: "
        "download the GGUF elsewhere and pass its local path instead"
    )
