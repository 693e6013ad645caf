"""``pice up`` end to end: real models, real children, a real request, a clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from pice_stack.supervisor import port_is_free
from tests.support.processes import free_port, pice_argv
from tests.support.tools import WEATHER_QUESTION, WEATHER_TOOL

pytestmark = [pytest.mark.model, pytest.mark.slow]

READY_TIMEOUT_S = 300.0


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces; fields after its closing parenthesis do not.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until_up(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``pice up`` (writing to ``log``) prints its banner; fails if it exits or stalls."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "PICE is up" not in log.read_text(errors="replace"):
        output = log.read_text(errors="replace")
        assert proc.poll() is None, f"pice up exited early:\n{output}"
        assert time.monotonic() < deadline, f"pice up not ready:\n{output}"
        time.sleep(0.5)


def _consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(port_is_free("127.0.0.1", base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    gateway_url: str
    ports: list[int]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> OpenAI:
        return OpenAI(base_url=f"{self.gateway_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    gateway, cloud, edge_base = free_port(), free_port(), _consecutive_free_ports(2)
    log = tmp_path / "pice-up.out"
    argv = pice_argv(
        "up",
        # The edge model is the embedded default's (derived, requantised by `make models`).
        *(
            "--cloud-model",
            "qwen2.5-coder-0.5b-instruct",
            "--edge-model",
            "qwen2.5-coder-0.5b-instruct-q8_0",
        ),
        *("--port", str(gateway), "--cloud-port", str(cloud)),
        *("--edge-base-port", str(edge_base), "--run-dir", str(tmp_path / "run")),
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    handle = Up(
        proc, f"http://127.0.0.1:{gateway}", [gateway, cloud, edge_base, edge_base + 1], log
    )
    try:
        wait_until_up(proc, log)
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_up_serves_a_request_and_ctrl_c_stops_every_child(up: Up) -> None:
    children = _descendants(up.proc.pid)
    assert len(children) >= 4, "cloud, two edges and the gateway"
    assert f"logs in {up.log.parent / 'run'}" in up.output()
    assert "curl" in up.output()
    assert "OpenAI(base_url=" in up.output()
    if len(os.sched_getaffinity(0)) >= 2:
        # Cloud alone on the first core, the edges on the others.
        affinities = sorted(sorted(os.sched_getaffinity(pid)) for pid in children)
        assert [0] in affinities
        assert any(0 not in cores and len(cores) == 1 for cores in affinities)

    client = up.client()
    completion = client.chat.completions.create(
        model="pice",
        messages=[{"role": "user", "content": "Name two colours of the rainbow."}],
        max_tokens=32,
        timeout=240,
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0

    # Tools through the default model: the cloud path, the stand-in's call streamed back.
    calls = [
        call
        for chunk in client.chat.completions.create(
            model="pice",
            messages=[{"role": "user", "content": WEATHER_QUESTION}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            parallel_tool_calls=False,  # else the 0.5B may write the same call twice
            max_tokens=60,
            stream=True,
            timeout=240,
        )
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert [(c.function.name if c.function else None) for c in calls] == ["get_weather"]

    # What a user of `make run` sees: a streamed progressive answer, points arriving one by one.
    stream = client.chat.completions.create(
        model="pice-progressive",
        messages=[{"role": "user", "content": "What are good ways to deal with stress?"}],
        max_tokens=200,
        stream=True,
        timeout=300,
    )
    arrivals: list[tuple[float, str]] = []
    report = None
    finish = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        report = (chunk.model_extra or {}).get("pice", report)
    assert report is not None
    # How many points the 0.5B stand-in lists depends on the CPU's kernels (on an AVX2 machine
    # it loops after two distinct titles, on AVX-512 it lists more): at least two shown (the
    # 200 tokens may end the answer before the last ones), each streamed in its place.
    count = sum(point["shown"] for point in report["points"])
    assert count >= 2, report
    text = "".join(piece for _, piece in arrivals)
    starts = [text.find(f"{n}. ") for n in range(1, count + 1)]
    assert -1 not in starts, text
    assert starts == sorted(starts), text
    # The 200 tokens may end the answer: then it says so, and no later point's header went out.
    if report["cut_by_limit"]:
        assert finish == "length", report
        assert f"{count + 1}. **" not in text, text
    assert all(point["shown"] for point in report["points"][:count]), report
    assert len(arrivals) >= 6
    assert arrivals[-1][0] - arrivals[0][0] > 0.5, "the answer arrived in one piece"

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphaned children"
    for port in up.ports:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def _server_pid(children: set[int], port: int) -> int:
    """The child process serving ``port`` (by its command line)."""
    return next(
        pid
        for pid in children
        if _alive(pid)
        and f"--port {port}" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    )


def test_a_dead_edge_is_restarted_and_a_dead_cloud_stops_everything(up: Up) -> None:
    children = _descendants(up.proc.pid)
    edge = _server_pid(children, up.ports[3])
    os.kill(edge, signal.SIGKILL)

    # The stack stays up: the supervisor names the death and starts the edge again, and the
    # gateway's poller takes it back once it answers.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, f"pice up stopped:\n{up.output()}"
        ready = httpx.get(f"{up.gateway_url}/ready", timeout=5)
        restarted = {pid for pid in _descendants(up.proc.pid) if pid not in children}
        if ready.status_code == 200 and ready.json()["edges"].get("edge-2") and restarted:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"edge-2 did not come back:\n{up.output()}")
    assert re.search(r"edge-2 \(pid \d+\) was killed by SIGKILL", up.output())
    assert _server_pid(_descendants(up.proc.pid), up.ports[3]) != edge
    client = up.client()
    completion = client.chat.completions.create(
        model="pice-progressive",
        messages=[{"role": "user", "content": "Name three kinds of fruit."}],
        max_tokens=48,
        timeout=240,
    )
    assert completion.choices[0].message.content

    # The cloud is not restarted: without it nothing is served, and the stack stops.
    children = _descendants(up.proc.pid)
    os.kill(_server_pid(children, up.ports[1]), signal.SIGKILL)
    assert up.proc.wait(timeout=30) != 0
    assert re.search(r"cloud \(pid \d+\) was killed by SIGKILL", up.output())
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphaned children"
