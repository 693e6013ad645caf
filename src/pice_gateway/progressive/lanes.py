"""Edge lanes: which placed points wait for an edge, and when they leave together as one job.

Batching versus pipelining: an edge expands every point of one ``/v1/expand`` job over one
shared, once-prefilled prefix, so points of a request that go to the same edge should share a
job; but waiting for more points delays the first one. Each edge therefore has a *lane*: the
first point placed on an idle lane goes out at once, and points placed on it while that job is
being set up (request sent, ``start`` event not yet received: queueing and prefill) wait and
leave together as the next job when it starts. No fixed batching window is needed: with a slow
cloud (a CPU sketch writes a line every ~0.5 s) each point leaves immediately, which is what
keeps an otherwise idle edge busy; with a fast cloud (vLLM on a GPU writes lines every few
milliseconds) lines pile up behind the first job's setup and go out as one batch. Sequences of
different jobs still share every decode step on the edge; only the prefix prefill is repeated.

Pure and synchronous: every method returns the points that leave now as one job (``[]`` for
none), and the dispatcher starts that job.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Lane:
    waiting: list[int] = field(default_factory=list)
    setting_up: bool = False


class Lanes:
    """One lane per edge, made on first use."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    @property
    def any_waiting(self) -> bool:
        return any(lane.waiting for lane in self._lanes.values())

    def place(self, edge: str, point: int) -> list[int]:
        """Put ``point`` in ``edge``'s lane: it leaves now unless a job is being set up."""
        lane = self._lanes.setdefault(edge, _Lane())
        lane.waiting.append(point)
        return [] if lane.setting_up else self._leave(lane)

    def setup_over(self, edge: str) -> list[int]:
        """The job being set up on ``edge`` started (or ended): the points that waited leave."""
        lane = self._lanes[edge]
        if not lane.setting_up:
            return []
        lane.setting_up = False
        return self._leave(lane) if lane.waiting else []

    def abandon(self, edge: str) -> list[int]:
        """``edge`` failed a job: reset its lane and hand back the points still waiting."""
        lane = self._lanes[edge]
        waiting, lane.waiting = lane.waiting, []
        lane.setting_up = False
        return waiting

    @staticmethod
    def _leave(lane: _Lane) -> list[int]:
        points, lane.waiting = lane.waiting, []
        lane.setting_up = True
        return points
