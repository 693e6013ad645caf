"""The edge agent takes the gateway's ``x-request-id``: returned, and on the job's log lines."""

from __future__ import annotations

import logging

import pytest

from pice.logs import RequestIdFilter
from tests.edge.test_backend_seam import AUTH, serve, until_ready
from tests.support.fake_engine import FakeBackend


async def test_an_expand_job_logs_under_the_callers_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    caplog.handler.addFilter(RequestIdFilter())
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        body = {"question": "q", "sketch": ["a", "b"]}
        given = await client.post("/v1/expand", json=body, headers={**AUTH, "x-request-id": "gw-7"})
        generated = await client.post("/v1/expand", json=body, headers=AUTH)
    assert given.status_code == generated.status_code == 200
    assert given.headers["x-request-id"] == "gw-7"
    assert generated.headers["x-request-id"].startswith("pice-")
    done = [r for r in caplog.records if r.getMessage().startswith("expand job done")]
    assert [getattr(r, "request_id", None) for r in done] == [
        "gw-7",
        generated.headers["x-request-id"],
    ]
