"""Where sketch points run: the edge registry (polled load) and pluggable schedulers."""

from pice_gateway.scheduling.base import EdgeStatus, PointPlacement, Scheduler
from pice_gateway.scheduling.least_loaded import LeastLoadedScheduler

__all__ = ["EdgeStatus", "LeastLoadedScheduler", "PointPlacement", "Scheduler"]
