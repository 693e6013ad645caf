"""Cloud overflow: a point goes to the cloud when the cloud would finish it well before the
edge the placement policy chose.

The placement policy compares edges only. In a burst every edge can be full, each new point
queueing behind dozens of others, while the cloud has finished the burst's sketches and
idles. With ``progressive.cloud_overflow`` on, dispatch asks after the policy chose an edge:
the edge's expected finish (:func:`~.hedging.estimate_on`, the ``eft`` estimate: round trip,
queue, rate at the batch the point joins) against the cloud's
(:meth:`~pice_gateway.cloud_meter.CloudMeter.expected_finish`: its measured time to first
token and decode rate beside the streams open on it). The cloud takes the point when

    cloud_finish × margin < edge_finish   and   expansions open on the cloud < max_points

The margin keeps points on the edges unless the cloud is clearly sooner (the edge estimate errs
slow under load, and the cloud's own time is worth more: it writes every request's sketch).
The cap bounds what overflow can take from the sketches: at most ``max_points`` expansions of
this gateway decode on the cloud at once, so a new request's sketch joins a batch at most that
much larger. Pure; dispatch supplies the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OverflowRule:
    """``progressive.cloud_overflow`` as the decision needs it."""

    enabled: bool = False
    max_points: int = 2
    margin: float = 1.5


def to_cloud(
    edge_finish: float, cloud_finish: float | None, open_expansions: int, rule: OverflowRule
) -> bool:
    """Whether a point the policy put on an edge finishing in ``edge_finish`` seconds goes to
    the cloud instead (see the module doc); never while the cloud's speed is unmeasured."""
    return (
        rule.enabled
        and cloud_finish is not None
        and open_expansions < rule.max_points
        and cloud_finish * rule.margin < edge_finish
    )
