"""The placement policies a gateway can run, by the name ``progressive.placement`` gives.

A new policy is a class with ``place()`` (see :mod:`.base`) and one entry here; settings refuse
any other name at start-up, so a typo is a settings error, not a silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pice_gateway.scheduling.base import Scheduler
from pice_gateway.scheduling.least_loaded import LeastLoadedScheduler

PolicyFactory = Callable[[], Scheduler]

PLACEMENT_POLICIES: Mapping[str, PolicyFactory] = MappingProxyType(
    {"least-loaded": LeastLoadedScheduler}
)


def placement_policy(name: str) -> Scheduler:
    """A fresh policy of the registered ``name`` (validated by the settings)."""
    return PLACEMENT_POLICIES[name]()
