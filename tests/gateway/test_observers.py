"""Every chat request reaches the report observers once, on every path and however it ends."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pice_gateway.observers import RequestOutcome
from pice_gateway.progressive.accounting import PiceReport
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.gateway.test_protocol import ask


class Recorder:
    """An observer that keeps what it saw (it runs on the gateway's server thread)."""

    def __init__(self) -> None:
        self.seen: list[tuple[PiceReport | None, RequestOutcome]] = []
        self._lock = threading.Lock()

    def __call__(self, report: PiceReport | None, outcome: RequestOutcome) -> None:
        with self._lock:
            self.seen.append((report, outcome))

    def wait_for(
        self, count: int, timeout: float = 5.0
    ) -> list[tuple[PiceReport | None, RequestOutcome]]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.seen)


def test_finished_requests_are_observed_once_each_on_every_path() -> None:
    recorder = Recorder()
    with fake_stack(CloudScript(), [EdgeScript("e1")], report_observers=[recorder]) as url:
        progressive = httpx.post(url + "/chat/completions", json=ask(), timeout=30)
        direct = httpx.post(
            url + "/chat/completions",
            json=ask(model="pice-cloud", stream=True, stream_options={"include_usage": True}),
            timeout=30,
        )
        unknown = httpx.post(url + "/chat/completions", json=ask(model="gpt-nope"), timeout=30)
        seen = recorder.wait_for(3)
        time.sleep(0.2)  # nothing more arrives
        assert len(recorder.seen) == 3
    assert (progressive.status_code, direct.status_code, unknown.status_code) == (200, 200, 404)
    (p_report, p_out), (d_report, d_out), (u_report, u_out) = seen
    assert (p_out.status, p_out.model, p_out.stream) == ("ok", "pice", False)
    assert p_report is not None
    assert p_report.model_dump(mode="json") == progressive.json()["pice"]
    assert (d_out.status, d_out.stream) == ("ok", True)
    assert d_report is not None
    assert (d_report.mode, d_report.reason) == ("cloud", "model")
    assert d_report.cloud_usage.total_tokens > 0
    assert u_report is None
    assert u_out.status == "error"
    assert u_out.error is not None
    assert u_out.error.code == "model_not_found"
    assert len({p_out.request_id, d_out.request_id, u_out.request_id}) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_cloud_is_observed_as_an_error(stream: bool) -> None:
    recorder = Recorder()
    cloud = CloudScript(fail_status=500)
    with fake_stack(cloud, [EdgeScript("e1")], report_observers=[recorder]) as url:
        response = httpx.post(url + "/chat/completions", json=ask(stream=stream), timeout=30)
        seen = recorder.wait_for(1)
    assert response.status_code == 503
    [(report, outcome)] = seen
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.error_type == "upstream_error"
    assert report is not None
    assert report.mode == "progressive"


def test_a_failure_mid_stream_is_observed_as_an_error() -> None:
    recorder = Recorder()
    cloud = CloudScript(die_after_chunks=3)
    with fake_stack(cloud, [EdgeScript("e1")], report_observers=[recorder]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as response:
            assert "error" in response.read().decode()
        [(_, outcome)] = recorder.wait_for(1)
    assert outcome.status == "error"


def test_a_client_that_leaves_is_observed_as_cancelled() -> None:
    recorder = Recorder()
    edge = EdgeScript("e1", token_delay=0.5)
    with fake_stack(CloudScript(), [edge], report_observers=[recorder]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as response:
            for line in response.iter_lines():
                if "Body" in line:
                    break
        [(report, outcome)] = recorder.wait_for(1)
    assert outcome.status == "cancelled"
    assert report is not None
    assert report.points[0].attempts == ["e1"]


def test_a_failing_observer_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(report: PiceReport | None, outcome: RequestOutcome) -> None:
        raise RuntimeError("observer bug")

    recorder = Recorder()
    with fake_stack(CloudScript(), [EdgeScript("e1")], report_observers=[broken, recorder]) as url:
        response = httpx.post(url + "/chat/completions", json=ask(model="pice-cloud"), timeout=30)
        recorder.wait_for(1)
    assert response.status_code == 200
    assert len(recorder.seen) == 1
    assert "report observer" in caplog.text
