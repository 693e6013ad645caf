"""Testbed profiles: how many edges, how fast each is, and the link in front of each.

A profile is a YAML file (``configs/testbed/NAME.yaml``; format in docs/configuration.md,
"Testbed profiles") read by ``pice up --profile`` and ``pice bench --profile``::

    name: heterogeneous
    edges:
      - {}                       # as fast as the machine lets it be
      - cpu_quota: 0.33          # a third of a core (cgroup v1 cpu quota)
        link: {delay_ms: 40, jitter_ms: 10, rate_mbit: 20}

Anything an edge leaves out comes from the command line (``--threads``, ``--edge-model``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pice_stack.link import LinkSpec

PROFILES_DIR = Path("configs") / "testbed"


class ProfileError(ValueError):
    """A profile that cannot be found or read."""


class LinkProfile(BaseModel):
    """The emulated link between the gateway and one edge, each way (``pice_stack.link``)."""

    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    # None = no bandwidth cap.
    rate_mbit: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _jitter_within_delay(self) -> LinkProfile:
        if self.jitter_ms > self.delay_ms:
            raise ValueError("jitter_ms must not exceed delay_ms")
        return self

    def spec(self) -> LinkSpec:
        return LinkSpec.of(
            delay_ms=self.delay_ms, jitter_ms=self.jitter_ms, rate_mbit=self.rate_mbit
        )


class EdgeProfile(BaseModel):
    """One edge of the testbed."""

    model_config = ConfigDict(extra="forbid")

    # Threads of its model server; None = ``--threads``.
    threads: int | None = Field(default=None, ge=1)
    # Cores' worth of CPU time (cgroup v1 cpu quota); None = no limit.
    cpu_quota: float | None = Field(default=None, gt=0)
    # Model name or path; None = ``--edge-model``.
    model: str | None = None
    # None = the gateway reaches the edge directly on loopback.
    link: LinkProfile | None = None


class TestbedProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    edges: list[EdgeProfile] = Field(min_length=1)


def profile_path(name_or_path: str | Path) -> Path:
    """A file path as given, else ``configs/testbed/NAME.yaml`` here or in the checkout."""
    given = Path(name_or_path)
    if given.suffix in (".yaml", ".yml") or given.exists():
        return given
    local = PROFILES_DIR / f"{name_or_path}.yaml"
    if local.exists():
        return local
    # Running outside the checkout's root: the file next to the source tree.
    return Path(__file__).resolve().parents[2] / local


def available_profiles() -> list[str]:
    root = profile_path("x").parent
    return sorted(p.stem for p in root.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> TestbedProfile:
    path = profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        known = ", ".join(available_profiles()) or "none found"
        raise ProfileError(f"no testbed profile {name_or_path!r} ({path}); known: {known}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return TestbedProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {exc}") from exc
