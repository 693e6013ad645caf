"""What a replica must change in its registry to match the shared members (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pice.edge_protocol import EdgeRegistration


@dataclass(frozen=True)
class Changes:
    # New members, and members whose URL moved (joined again: the old client is replaced).
    joins: list[EdgeRegistration]
    # Members this replica joined that the store no longer has (left, or expired).
    leaves: list[str]


def reconcile(
    joined: Mapping[str, EdgeRegistration],
    shared: Mapping[str, EdgeRegistration],
    static: Collection[str] = (),
) -> Changes:
    """From the members this replica has ``joined`` to the store's ``shared`` ones.

    ``static`` names (configured ``edges``) are never joined nor left from the store: a
    registration cannot take over a configured edge.
    """
    joins = [
        member
        for name, member in sorted(shared.items())
        if name not in static and (name not in joined or joined[name].url != member.url)
    ]
    leaves = sorted(name for name in joined if name not in shared)
    return Changes(joins, leaves)
