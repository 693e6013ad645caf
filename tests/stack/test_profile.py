"""Testbed profiles: the shipped files, their validation, and a link that really sits between
the gateway and an edge (the gateway's own poller measures its delay)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pice_gateway.edge_client import HttpEdgeClient
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.settings import EdgeEndpoint
from pice_gateway.upstream_http import Timeouts
from pice_stack.profile import (
    LinkProfile,
    ProfileError,
    available_profiles,
    load_profile,
)
from pice_stack.stack import StackSpec, link_child
from pice_stack.supervisor import Supervisor
from tests.gateway.fakes import EdgeScript, fake_edge, serve
from tests.support.processes import free_port


def test_the_shipped_profiles_load() -> None:
    assert {"homogeneous", "heterogeneous"} <= set(available_profiles())
    homogeneous = load_profile("homogeneous")
    assert len(homogeneous.edges) == 2
    assert all(e.cpu_quota is None and e.link is None for e in homogeneous.edges)

    heterogeneous = load_profile("heterogeneous")
    fast, slow = heterogeneous.edges
    assert fast.cpu_quota is None
    assert fast.link is None
    assert slow.cpu_quota == pytest.approx(0.33)
    assert slow.link == LinkProfile(delay_ms=40, jitter_ms=10, rate_mbit=20)
    assert slow.link.spec().rate_bytes_s == pytest.approx(2_500_000)

    # The isolated variant: the same link, and quotas at 3:1 that fit in the one core both
    # edges share, so neither takes the other's CPU time.
    fast, slow = load_profile("heterogeneous-isolated").edges
    assert fast.cpu_quota is not None
    assert slow.cpu_quota is not None
    assert fast.cpu_quota / slow.cpu_quota == pytest.approx(3.0)
    assert fast.cpu_quota + slow.cpu_quota <= 1.0
    assert (fast.link, slow.link) == (None, heterogeneous.edges[1].link)


def test_a_profile_file_path_works_and_mistakes_are_named(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nedges:\n  - threads: 2\n  - model: other-model\n")
    profile = load_profile(good)
    assert [e.threads for e in profile.edges] == [2, None]
    spec = StackSpec(profile=profile, edges=7)
    assert len(spec.edge_profiles()) == 2  # the profile's edges, not --edges
    assert len(StackSpec(edges=3).edge_profiles()) == 3

    typo = tmp_path / "typo.yaml"
    typo.write_text("name: t\nedges:\n  - cpu_qouta: 0.5\n")
    with pytest.raises(ProfileError, match="cpu_qouta"):
        load_profile(typo)
    early = tmp_path / "early.yaml"
    early.write_text("name: e\nedges:\n  - link: {delay_ms: 5, jitter_ms: 10}\n")
    with pytest.raises(ProfileError, match="jitter"):
        load_profile(early)
    with pytest.raises(ProfileError, match="heterogeneous"):
        load_profile("no-such-profile")


def test_link_child_passes_the_profile_to_the_proxy() -> None:
    child = link_child(
        "link-2", LinkProfile(delay_ms=40, jitter_ms=10, rate_mbit=20), "127.0.0.1", 9001, 9002
    )
    argv = " ".join(child.argv)
    assert "-m pice_stack.link" in argv
    assert "--listen 127.0.0.1:9001 --upstream 127.0.0.1:9002" in argv
    assert "--delay-ms 40 --jitter-ms 10" in argv
    assert "--rate-mbit 20" in argv
    assert child.url == "http://127.0.0.1:9001"


async def test_the_gateway_poller_measures_the_links_delay(tmp_path: Path) -> None:
    """A link child in front of an edge: the round trip the poller sees is >= the delay."""
    link = LinkProfile(delay_ms=40, jitter_ms=10, rate_mbit=20)
    with serve(fake_edge(EdgeScript("slow"))) as edge_url:
        edge_port = int(edge_url.rsplit(":", 1)[1])
        supervisor = Supervisor(tmp_path)
        child = dataclasses.replace(
            link_child("link-1", link, "127.0.0.1", free_port(), edge_port),
            ready_path="/v1/load",  # the fake edge has no /ready
            ready_timeout_s=30.0,
        )
        try:
            supervisor.wait_ready([supervisor.start(child)])
            direct = HttpEdgeClient.connect(
                EdgeEndpoint(name="direct", url=edge_url), Timeouts(connect=5.0, read=5.0, pool=5.0)
            )
            linked = HttpEdgeClient.connect(
                EdgeEndpoint(name="linked", url=child.url),
                Timeouts(connect=5.0, read=5.0, pool=5.0),
            )
            registry = EdgeRegistry([Edge(direct), Edge(linked)], poll_interval=1.0)
            try:
                for _ in range(3):
                    await registry.poll_once()
            finally:
                await registry.aclose()
        finally:
            supervisor.stop(grace_s=5.0)
    by_name = {status.name: status for status in registry.snapshot()}
    assert by_name["linked"].up
    linked_rtt = by_name["linked"].rtt
    assert linked_rtt is not None
    # Each way is at least 40 - 10 ms, so a round trip is at least 60 ms.
    assert linked_rtt >= 2 * (link.delay_ms - link.jitter_ms) / 1000
    assert linked_rtt >= link.delay_ms / 1000
    direct_rtt = by_name["direct"].rtt
    assert direct_rtt is not None
    assert direct_rtt < linked_rtt
