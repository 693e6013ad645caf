"""The placement policies a gateway can run, by the name ``progressive.placement`` gives.

A new policy is a class with ``place()`` (see :mod:`.base`) and one entry here; settings refuse
any other name at start-up, so a typo is a settings error, not a silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pice_gateway.placement.base import PlacementPolicy
from pice_gateway.placement.eft import EftPolicy
from pice_gateway.placement.least_loaded import LeastLoadedPolicy
from pice_gateway.placement.length_aware import LengthAwarePolicy
from pice_gateway.placement.round_robin import RoundRobinPolicy

PolicyFactory = Callable[[], PlacementPolicy]

PLACEMENT_POLICIES: Mapping[str, PolicyFactory] = MappingProxyType(
    {
        "least-loaded": LeastLoadedPolicy,
        "eft": EftPolicy,
        "eft-length": LengthAwarePolicy,
        "round-robin": RoundRobinPolicy,
    }
)


def placement_policy(name: str) -> PlacementPolicy:
    """A fresh policy of the registered ``name`` (validated by the settings)."""
    return PLACEMENT_POLICIES[name]()
