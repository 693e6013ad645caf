"""Edges registering with a real gateway (uvicorn): auth, validation, placement, expiry, leaving.

The fake edges (uvicorn, :mod:`tests.gateway.fakes`) register through ``/v1/edges`` as
``pice edge serve --join`` does; no request may be lost when one leaves in the middle of a job.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from pice_gateway.app import create_app
from tests.gateway.conftest import settings_for
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, serve
from tests.gateway.fleet import (
    AUTH,
    ask,
    expected,
    fleet_settings,
    gateway_with,
    leave,
    members,
    register,
    registration,
    until,
)

pytestmark = pytest.mark.timeout(60)


def test_registration_is_off_without_a_fleet_token() -> None:
    with (
        serve(fake_cloud(CloudScript())) as cloud,
        serve(create_app(settings_for(cloud, {}))) as gw,
    ):
        response = register(gw, "e1", "http://127.0.0.1:9")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "edge_registration_disabled"
    assert "edge_client.token" in error["message"]


def test_registration_needs_the_fleet_token_and_a_plain_url() -> None:
    with (
        serve(fake_cloud(CloudScript())) as cloud,
        serve(create_app(fleet_settings(cloud, {"static-1": "http://127.0.0.1:9"}))) as gw,
    ):
        assert register(gw, "e1", "http://127.0.0.1:9", headers={}).status_code == 401
        wrong = register(gw, "e1", "http://127.0.0.1:9", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["type"] == "authentication_error"
        # Without the token nobody can remove (or heartbeat) a member either.
        assert httpx.delete(gw + "/v1/edges/e1").status_code == 401
        assert httpx.post(gw + "/v1/edges/e1/heartbeat").status_code == 401

        bad_url = register(gw, "e1", "file:///etc/passwd")
        assert bad_url.status_code == 400
        assert bad_url.json()["error"]["type"] == "invalid_request_error"
        # A configured edge cannot be taken over by a registration under its name.
        taken = register(gw, "static-1", "http://127.0.0.1:10")
        assert taken.status_code == 400
        assert taken.json()["error"]["code"] == "edge_name_reserved"

        unknown = httpx.post(gw + "/v1/edges/e1/heartbeat", headers=AUTH)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_edge"
        assert set(members(gw)) == {"static-1"}


def test_a_registered_edge_is_placed_on_at_once_and_leaves_on_request() -> None:
    joiner = EdgeScript("joiner", token_delay=0.001)
    with gateway_with(joiner) as (gw, [edge_url]):
        text, report = ask(gw)
        assert {p["edge"] for p in report["points"]} == {"cloud"}, "no edge yet"

        response = register(gw, "joiner", edge_url)
        assert response.status_code == 200
        ack = response.json()
        assert ack["reachable"] is True, "the gateway polled the new edge before answering"
        assert ack["heartbeat_seconds"] == 0.1
        assert ack["expiry_seconds"] == 30.0
        # No wait for the poller: the very next request places on the new edge.
        text, report = ask(gw)
        assert {p["edge"] for p in report["points"]} == {"joiner"}
        assert text == expected(report)
        listed = members(gw)["joiner"]
        assert listed["static"] is False
        assert listed["registration"]["url"] == edge_url

        beat = httpx.post(gw + "/v1/edges/joiner/heartbeat", headers=AUTH)
        assert beat.status_code == 200
        assert beat.json()["name"] == "joiner"

        assert leave(gw, "joiner").status_code == 204
        assert members(gw) == {}
        jobs = len(joiner.jobs)
        _, report = ask(gw)
        assert {p["edge"] for p in report["points"]} == {"cloud"}
        assert len(joiner.jobs) == jobs, "no job went to the edge after it left"


def test_an_edge_that_stops_heartbeating_expires() -> None:
    with gateway_with(EdgeScript("quiet"), fleet={"expiry_seconds": 0.6}) as (gw, [edge_url]):
        assert register(gw, "quiet", edge_url).status_code == 200
        assert "quiet" in members(gw)
        until(lambda: "quiet" not in members(gw), what="the silent edge's expiry")
        beat = httpx.post(gw + "/v1/edges/quiet/heartbeat", headers=AUTH)
        assert beat.status_code == 404, "an expired edge is told to register again"


def test_heartbeats_keep_an_edge_past_its_expiry() -> None:
    # Expiry 3 s against beats every 0.1 s: a machine would have to stall for 3 s between two
    # beats to expire a live edge (the failure names the longest gap it saw).
    with gateway_with(EdgeScript("alive"), fleet={"expiry_seconds": 3.0}) as (gw, [edge_url]):
        assert register(gw, "alive", edge_url).status_code == 200
        # Heartbeats over two expiry periods: the edge must stay a member.
        start = last = time.monotonic()
        longest = 0.0
        while last < start + 6.5:
            status = httpx.post(gw + "/v1/edges/alive/heartbeat", headers=AUTH).status_code
            now = time.monotonic()
            longest = max(longest, now - last)
            last = now
            assert status == 200, f"beat refused ({status}); longest gap {longest:.2f}s"
            time.sleep(0.1)
        assert "alive" in members(gw)


def test_an_edge_leaving_mid_job_finishes_its_points() -> None:
    slow = EdgeScript("slow", token_delay=0.1)
    with (
        gateway_with(slow) as (gw, [edge_url]),
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert register(gw, "slow", edge_url).status_code == 200
        answer = pool.submit(ask, gw)
        until(lambda: slow.running > 0, what="the slow edge running the job")
        assert leave(gw, "slow").status_code == 204
        assert "slow" not in members(gw), "placement stops at once"
        text, report = answer.result(timeout=30)
        assert {p["edge"] for p in report["points"]} == {"slow"}, "its running points finished"
        assert text == expected(report)
        assert slow.cancelled == 0


def test_a_registered_edge_that_dies_mid_job_loses_its_points_to_another() -> None:
    dying, good = EdgeScript("dying", behaviour="die"), EdgeScript("good")
    with gateway_with(dying, good) as (gw, [dying_url, good_url]):
        assert register(gw, "dying", dying_url).status_code == 200
        assert register(gw, "good", good_url).status_code == 200
        text, report = ask(gw)
        assert dying.jobs, "the dying edge got work"
        assert {p["edge"] for p in report["points"]} == {"good"}
        assert text == expected(report)


def test_registering_again_at_a_new_url_moves_the_edge() -> None:
    old, new = EdgeScript("e", author="old"), EdgeScript("e", author="new")
    with gateway_with(old, new) as (gw, [old_url, new_url]):
        assert register(gw, "e", old_url).status_code == 200
        assert register(gw, "e", new_url).status_code == 200
        assert members(gw)["e"]["registration"]["url"] == new_url
        ask(gw)
        assert new.jobs
        assert not old.jobs


def test_registration_body_is_validated() -> None:
    with gateway_with() as (gw, _):
        body = registration("e1", "http://127.0.0.1:9")
        del body["capabilities"]
        response = httpx.post(gw + "/v1/edges", json=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "capabilities"
