"""Log lines as text or JSON, each naming its request; the settings that choose the format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from edge_agent.settings import EdgeSettings
from pice.logs import configure_logging, log_handler
from pice_gateway.app import create_app
from pice_gateway.observers import log_report
from pice_gateway.settings import GatewaySettings
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript, serve
from tests.gateway.test_observers import Recorder
from tests.gateway.test_protocol import ask
from tests.support.processes import free_port


@pytest.fixture
def gateway_lines() -> Iterator[io.StringIO]:
    """What the ``pice_gateway`` loggers write through a JSON handler during the test."""
    stream = io.StringIO()
    logger = logging.getLogger("pice_gateway")
    handler = log_handler("json", stream)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_json_lines_of_a_request_parse_and_name_it(gateway_lines: io.StringIO) -> None:
    recorder = Recorder()
    # An erroring edge makes the dispatcher log a warning in an edge job's task.
    with fake_stack(
        CloudScript(),
        [EdgeScript("bad", behaviour="error")],
        report_observers=[log_report, recorder],
    ) as url:
        response = httpx.post(
            url + "/chat/completions",
            json=ask(model="pice-progressive"),
            headers={"x-request-id": "r-json"},
            timeout=30,
        )
        recorder.wait_for(1)
    assert response.status_code == 200
    records = [json.loads(line) for line in gateway_lines.getvalue().splitlines()]
    assert records
    assert all(set(r) >= {"time", "level", "logger", "message", "request_id"} for r in records)
    # The edge poller logs outside any request; everything else was the request's.
    polls = [r for r in records if r["logger"] == "pice_gateway.edges"]
    assert {r["request_id"] for r in polls} == {"-"}
    assert {r["request_id"] for r in records if r not in polls} == {"r-json"}
    summary = [r for r in records if r["logger"] == "pice_gateway.observers"]
    assert [r["level"] for r in summary] == ["INFO"]
    assert summary[0]["message"].startswith("request r-json model=pice-progressive")
    failover = [r for r in records if r["logger"] == "pice_gateway.progressive.dispatch"]
    assert failover
    assert all(r["level"] == "WARNING" for r in failover)


def test_json_lines_carry_extra_fields_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logs.json")
    logger.addHandler(log_handler("json", stream))
    try:
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("it failed", extra={"edge": "e1"})
    finally:
        logger.handlers.clear()
    [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["message"] == "it failed"
    assert record["request_id"] == "-"  # outside a request
    assert record["edge"] == "e1"
    assert "ValueError: bad value" in record["exc_info"]


def test_configure_logging_replaces_the_plain_root_handlers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        # What ``logging.basicConfig`` (run by ``pice`` before its subcommand) leaves behind.
        plain = logging.StreamHandler()
        root.addHandler(plain)
        configure_logging("json", "WARNING")
        assert plain not in root.handlers, "replaced: no line written twice"
        assert [h for h in root.handlers if type(h) is logging.StreamHandler] == root.handlers[-1:]
        assert set(saved) <= set(root.handlers), "other handlers (pytest's capture) are kept"
        assert root.level == logging.WARNING
        logging.getLogger("tests.logs.root").warning("to stderr")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["message"] == "to stderr"
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_log_format_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().log_format == "text"
    assert EdgeSettings().log_format == "text"
    monkeypatch.setenv("PICE_LOG_FORMAT", "json")
    assert GatewaySettings().log_format == "json"
    # One variable switches the edges of a stack too; the edge's own variable wins.
    assert EdgeSettings().log_format == "json"
    monkeypatch.setenv("PICE_EDGE_LOG_FORMAT", "text")
    assert EdgeSettings().log_format == "text"
    monkeypatch.setenv("PICE_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError):
        GatewaySettings()
    monkeypatch.setenv("PICE_TRACING__ENABLED", "true")
    monkeypatch.setenv("PICE_EDGE_TRACING__OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("PICE_LOG_FORMAT", "text")
    assert GatewaySettings().tracing.enabled is True
    assert EdgeSettings().tracing.otlp_endpoint == "http://collector:4318/v1/traces"


def test_a_dead_cloud_is_logged_with_its_cause_and_answered_without_it(
    gateway_lines: io.StringIO,
) -> None:
    dead = free_port()  # nothing listens here
    settings = GatewaySettings(cloud={"base_url": f"http://127.0.0.1:{dead}/v1", "model": "m"})
    with serve(create_app(settings)) as url:
        response = httpx.post(
            url + "/v1/chat/completions", json=ask(model="pice-cloud"), timeout=30
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["message"] == "cloud failed: ClientConnectorError"
    assert str(dead) not in response.text, "the upstream's address is not the client's business"
    records = [json.loads(line) for line in gateway_lines.getvalue().splitlines()]
    [summary] = [r for r in records if r["logger"] == "pice_gateway.observers"]
    assert summary["level"] == "WARNING"
    assert "error=upstream_error: cloud failed: ClientConnectorError (" in summary["message"]
    assert str(dead) in summary["message"], "the operator's log names where it failed"
