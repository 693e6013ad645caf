"""Membership without sockets: the in-memory store's expiry, reconcile, the protocol's checks,
placement over the other replicas' counts, and two replicas' ``Fleet``s over one store."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import ValidationError

from pice.edge_protocol import EdgeCapabilities, EdgeRegistration
from pice.errors import InvalidRequestError, NotFoundError
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.membership.fleet import Fleet
from pice_gateway.membership.reconcile import reconcile
from pice_gateway.membership.store import MemoryStore, summed
from pice_gateway.placement import LeastLoadedPolicy
from pice_gateway.placement.base import PointPlacement
from pice_gateway.settings import FleetSettings
from tests.gateway.inprocess import InProcessEdge


def member(name: str, url: str = "http://10.0.0.1:8101") -> EdgeRegistration:
    return EdgeRegistration(
        name=name, url=url, capabilities=EdgeCapabilities(model="m", max_sequences=8)
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_member_lives_until_its_ttl_past_the_last_heartbeat() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.put_member(member("a"), ttl=6.0)
    clock.now += 5.0
    assert await store.touch_member("a", ttl=6.0)
    clock.now += 5.0
    assert list(await store.members()) == ["a"], "the heartbeat pushed the expiry"
    clock.now += 1.5
    assert await store.members() == {}
    assert not await store.touch_member("a", ttl=6.0), "an expired member must register again"
    assert not await store.remove_member("a")


async def test_in_flight_sums_the_other_live_replicas_and_drops_a_dead_one() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.publish_in_flight("r1", {"e1": 2, "e2": 1}, ttl=3.0)
    await store.publish_in_flight("r2", {"e1": 5}, ttl=3.0)
    await store.publish_in_flight("me", {"e1": 100}, ttl=3.0)
    assert await store.in_flight(excluding="me") == {"e1": 7, "e2": 1}
    clock.now += 2.0
    await store.publish_in_flight("r2", {"e1": 4}, ttl=3.0)  # r2 lives on, r1 stops publishing
    clock.now += 1.5
    assert await store.in_flight(excluding="me") == {"e1": 4}
    await store.withdraw("r2")
    assert await store.in_flight(excluding="me") == {}


def test_summed_adds_counts_per_edge() -> None:
    assert summed([{"a": 1}, {"a": 2, "b": 3}, {}]) == {"a": 3, "b": 3}


def test_reconcile_joins_new_and_moved_members_and_leaves_missing_ones() -> None:
    joined = {"same": member("same"), "moved": member("moved"), "gone": member("gone")}
    shared = {
        "same": member("same"),
        "moved": member("moved", "http://10.0.0.9:8101"),
        "new": member("new"),
        "static": member("static"),
    }
    changes = reconcile(joined, shared, static={"static"})
    assert [m.name for m in changes.joins] == ["moved", "new"]
    assert changes.joins[0].url == "http://10.0.0.9:8101"
    assert changes.leaves == ["gone"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://10.0.0.1/", "http:// or https://"),
        ("10.0.0.1:8101", "http:// or https://"),
        ("http://", "no host"),
        ("http://user:pw@10.0.0.1:8101", "credentials"),
        ("http://10.0.0.1:8101/?x=1", "query"),
    ],
)
def test_a_registration_takes_only_plain_http_urls(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        member("a", url)


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 64])
def test_a_registration_name_is_a_safe_path_segment(name: str) -> None:
    with pytest.raises(ValidationError):
        member(name)


def test_a_trailing_slash_is_dropped_so_the_same_url_is_the_same_member() -> None:
    assert member("a", "https://edge.example:8101/").url == "https://edge.example:8101"


def test_fleet_settings_refuse_an_expiry_within_one_heartbeat() -> None:
    with pytest.raises(ValidationError, match="expiry_seconds"):
        FleetSettings(heartbeat_seconds=2.0, expiry_seconds=2.0)
    with pytest.raises(ValidationError, match="replica_ttl_seconds"):
        FleetSettings(sync_seconds=1.0, replica_ttl_seconds=0.5)


def test_placement_counts_the_other_replicas_in_flight() -> None:
    registry = EdgeRegistry([Edge(InProcessEdge("a")), Edge(InProcessEdge("b"))], 1.0)
    registry.acquire("b", 2)
    registry.set_remote_in_flight({"a": 5, "unknown": 9})
    by_name = {status.name: status for status in registry.snapshot()}
    assert (by_name["a"].in_flight, by_name["a"].remote_in_flight) == (5, 5)
    assert (by_name["b"].in_flight, by_name["b"].remote_in_flight) == (2, 0)
    assert registry.local_in_flight() == {"b": 2}, "only its own counts are published"
    point = PointPlacement(request_id="r", point=0, title="t", excluded=frozenset())
    up = [replace(status, up=True) for status in registry.snapshot()]
    assert LeastLoadedPolicy().place(point, up) == "b", "a is busier, with the others' load"


async def test_two_replicas_over_one_store_share_members_and_counts() -> None:
    store = MemoryStore()
    edges: dict[str, InProcessEdge] = {}

    def connect(registration: EdgeRegistration) -> InProcessEdge:
        edges[registration.name] = InProcessEdge(registration.name)
        return edges[registration.name]

    static = EdgeRegistry([Edge(InProcessEdge("fixed"))], 1.0)
    a = Fleet(static, store, FleetSettings(), connect, frozenset({"fixed"}), replica="a")
    b_registry = EdgeRegistry([], 1.0)
    b = Fleet(b_registry, store, FleetSettings(), connect, replica="b")

    with pytest.raises(InvalidRequestError):
        await a.register(member("fixed"))
    ack = await a.register(member("e1"))
    assert ack.reachable is True, "the new member was polled before the answer"
    assert "e1" in static
    first = edges["e1"]
    await a.register(member("e1"))
    assert edges["e1"] is first, "registering again at the same URL keeps the client"

    await b.sync_once()
    assert "e1" in b_registry
    assert b_registry.snapshot()[0].up, "a member joined by a sync is polled at once"
    static.acquire("e1", 3)
    await a.sync_once()
    await b.sync_once()
    assert b_registry.snapshot()[0].in_flight == 3

    await b.leave("e1")
    await a.sync_once()
    assert "e1" not in static
    assert not edges["e1"].closed, "jobs still running on the edge keep its client"
    static.release("e1", 3)
    await asyncio.sleep(0)
    assert edges["e1"].closed
    with pytest.raises(NotFoundError):
        await b.heartbeat("e1")
    await a.aclose()
    await b.aclose()
    await static.aclose()
    await b_registry.aclose()


class _BrokenOnceStore(MemoryStore):
    """A store whose first read of the members raises what no sync expects (a bug)."""

    reads = 0

    async def members(self) -> dict[str, EdgeRegistration]:
        self.reads += 1
        if self.reads == 1:
            raise RuntimeError("a bug in one sync")
        return await super().members()


async def test_a_sync_that_raises_does_not_stop_the_syncing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _BrokenOnceStore()
    await store.put_member(member("e1"), ttl=60.0)
    registry = EdgeRegistry([], 1.0)
    fleet = Fleet(
        registry, store, FleetSettings(sync_seconds=0.01), lambda m: InProcessEdge(m.name)
    )
    syncing = asyncio.create_task(fleet.run())
    try:
        for _ in range(500):
            if "e1" in registry:
                break
            await asyncio.sleep(0.005)
        assert "e1" in registry, "the syncs after the failed one still join members"
        assert not syncing.done()
    finally:
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)
        await fleet.aclose()
        await registry.aclose()
    assert "fleet sync failed; syncing continues" in caplog.text
