"""The pure parts of membership: the in-memory store's expiry, reconcile, the protocol's checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pice.edge_protocol import EdgeCapabilities, EdgeRegistration
from pice_gateway.membership.reconcile import reconcile
from pice_gateway.membership.store import MemoryStore, summed
from pice_gateway.settings import FleetSettings


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
