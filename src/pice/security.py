"""Secure-by-default checks shared by the gateway and the edge agent.

- **Exposure**: a server bound to anything but loopback must require a bearer token, unless
  the operator opts out (``allow_insecure``), which is logged as a WARNING naming the address.
  Loopback stays open so ``pice up`` and ``make run`` need no keys.
- **Secret files**: keys and tokens may come from a file (a Kubernetes or compose secret mounted
  read-only), one per line; blank lines and ``#`` comments are skipped. Errors name the file,
  never its content.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from pice.errors import InsecureBindError

# Names that always mean this machine. Any other host name could resolve anywhere.
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    ``0.0.0.0``, ``::`` and an empty host bind every interface; a host name other than
    ``localhost`` is treated as exposed, since it may resolve to a public interface.
    """
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(
    service: str,
    host: str,
    port: int,
    *,
    authenticated: bool,
    allow_insecure: bool,
    logger: logging.Logger,
) -> None:
    """Refuse to serve ``host`` without authentication unless the operator opted out.

    Raises :class:`InsecureBindError` for a non-loopback ``host`` with no credentials and no
    opt-out; logs a WARNING when the opt-out is what lets it start.
    """
    if authenticated or is_loopback(host):
        return
    where = f"{host}:{port}"
    if not allow_insecure:
        raise InsecureBindError(
            f"Refusing to start the {service} on {where} without authentication: anyone who "
            f"can reach {where} could use it. Configure a key (see docs/operations.md, "
            "'Security'), bind 127.0.0.1, or opt out with allow_insecure / --insecure / "
            "PICE_ALLOW_INSECURE=1."
        )
    logger.warning(
        "SECURITY: the %s listens on %s WITHOUT authentication (allow_insecure is set); "
        "anyone who can reach this address can use it",
        service,
        where,
    )


def stripped_secret(secret: SecretStr | None) -> SecretStr | None:
    """``secret`` without surrounding whitespace; a blank one is no secret at all (None)."""
    if secret is None:
        return None
    value = secret.get_secret_value().strip()
    return SecretStr(value) if value else None


# A key or token setting: an empty ``PICE_EDGE_API_TOKEN=`` must not count as authentication.
OptionalSecret = Annotated[SecretStr | None, AfterValidator(stripped_secret)]


def read_secret_lines(path: Path) -> list[SecretStr]:
    """The non-blank, non-comment lines of ``path``, each a secret; at least one is required."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    secrets = [
        SecretStr(line.strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not secrets:
        raise ValueError(f"secret file {path} holds no key")
    return secrets


def read_secret(path: Path) -> SecretStr:
    """The one secret in ``path`` (its first key line)."""
    return read_secret_lines(path)[0]


def secret_or_file(secret: SecretStr | None, path: Path | None) -> SecretStr | None:
    """A ``x`` / ``x_file`` setting pair resolved: the value given, else the file's secret."""
    if secret is None and path is not None:
        return read_secret(path)
    return secret
