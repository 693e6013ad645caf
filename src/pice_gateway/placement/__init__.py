"""Placement: which edge expands each sketch point (the policy seam and its registered policies)."""

from pice_gateway.placement.base import EdgeStatus, PlacementPolicy, PointPlacement
from pice_gateway.placement.eft import EftPolicy
from pice_gateway.placement.least_loaded import LeastLoadedPolicy
from pice_gateway.placement.length_aware import LengthAwarePolicy
from pice_gateway.placement.round_robin import RoundRobinPolicy

__all__ = [
    "EdgeStatus",
    "EftPolicy",
    "LeastLoadedPolicy",
    "LengthAwarePolicy",
    "PlacementPolicy",
    "PointPlacement",
    "RoundRobinPolicy",
]
