"""Placement: which edge expands each sketch point (the policy seam and its registered policies)."""

from pice_gateway.placement.base import EdgeStatus, PlacementPolicy, PointPlacement
from pice_gateway.placement.least_loaded import LeastLoadedPolicy

__all__ = ["EdgeStatus", "LeastLoadedPolicy", "PlacementPolicy", "PointPlacement"]
