"""Request ids: taken from the client or generated, returned on every chat response, sent to
the cloud and the edges, and stamped on the gateway's log lines."""

from __future__ import annotations

import io
import logging
import re

import httpx
import pytest

from pice.http.request_id import accepted
from pice.logs import RequestIdFilter, log_handler
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.gateway.test_observers import Recorder
from tests.gateway.test_protocol import ask

GENERATED = re.compile(r"pice-[0-9a-f]{12}")


def test_accepted_ids_are_printable_and_at_most_128_chars() -> None:
    assert accepted("abc-123_XYZ:/.") == "abc-123_XYZ:/."
    assert accepted("x" * 128) == "x" * 128
    for bad in (None, "", "x" * 129, "has space", "tab\there", "line\r\nbreak", "caf\u00e9"):
        assert accepted(bad) is None


def test_a_given_id_is_returned_observed_and_sent_to_the_cloud_and_edges() -> None:
    cloud, edge = CloudScript(), EdgeScript("e1")
    recorder = Recorder()
    with fake_stack(cloud, [edge], report_observers=[recorder]) as url:
        response = httpx.post(
            url + "/chat/completions", json=ask(), headers={"x-request-id": "client-42"}, timeout=30
        )
        [(_, outcome)] = recorder.wait_for(1)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-42"
    assert outcome.request_id == "client-42"
    assert cloud.request_ids == ["client-42"]  # the sketch
    assert edge.request_ids
    assert set(edge.request_ids) == {"client-42"}
    assert {job["request_id"] for job in edge.jobs} == {"client-42"}


@pytest.mark.parametrize("given", [None, "x" * 129, "two words"])
def test_a_missing_or_invalid_id_is_generated(given: str | None) -> None:
    cloud = CloudScript()
    recorder = Recorder()
    headers = {} if given is None else {"x-request-id": given}
    with fake_stack(cloud, [EdgeScript("e1")], report_observers=[recorder]) as url:
        with httpx.stream(
            "POST",
            url + "/chat/completions",
            json=ask(model="pice-cloud", stream=True),
            headers=headers,
            timeout=30,
        ) as response:
            response.read()
        [(_, outcome)] = recorder.wait_for(1)
    request_id = response.headers["x-request-id"]
    assert GENERATED.fullmatch(request_id)
    assert outcome.request_id == request_id
    assert cloud.request_ids == [request_id]


def test_error_responses_carry_the_id_and_each_request_gets_its_own() -> None:
    with fake_stack(CloudScript(fail_status=500), [EdgeScript("e1")]) as url:
        unknown = httpx.post(url + "/chat/completions", json=ask(model="gpt-nope"), timeout=30)
        failed = httpx.post(
            url + "/chat/completions", json=ask(), headers={"x-request-id": "r-9"}, timeout=30
        )
        bad_body = httpx.post(url + "/chat/completions", json={"model": "pice"}, timeout=30)
    assert (unknown.status_code, failed.status_code, bad_body.status_code) == (404, 503, 400)
    assert failed.headers["x-request-id"] == "r-9"
    ids = {unknown.headers["x-request-id"], bad_body.headers["x-request-id"]}
    assert all(GENERATED.fullmatch(request_id) for request_id in ids)
    assert len(ids) == 2


def test_log_lines_of_a_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with fake_stack(CloudScript(fail_status=500), [EdgeScript("e1")]) as url:
        httpx.post(
            url + "/chat/completions", json=ask(), headers={"x-request-id": "r-log"}, timeout=30
        )
    lines = [record for record in caplog.records if record.name.startswith("pice_gateway")]
    assert any(record.getMessage().startswith("request r-log ") for record in lines)
    mine = [record for record in lines if "r-log" in record.getMessage()]
    assert mine
    assert all(getattr(record, "request_id", None) == "r-log" for record in mine)


def test_installed_log_format_names_the_request() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.request_id")
    logger.addHandler(log_handler("text", stream))
    try:
        logger.warning("outside")
    finally:
        logger.handlers.clear()
    assert "[-]: outside" in stream.getvalue()
