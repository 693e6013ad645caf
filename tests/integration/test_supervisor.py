"""The ``pice up`` supervisor with real (model-free) child processes, and its pure helpers."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pice_gateway.settings import load_settings
from pice_stack.stack import RunningStack, StackSpec, gateway_config, gateway_env, plan_cores
from pice_stack.supervisor import ChildProcess, ChildSpec, RestartBudget, StackError, Supervisor
from tests.support.processes import free_port

# A tiny HTTP server whose /ready answers 200, and which starts a grandchild (as vLLM does)
# that must not outlive it.
SERVER = textwrap.dedent(
    """
    import http.server, subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 404); self.end_headers()
        def log_message(self, *args): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _server(name: str, *, restart: bool = False) -> ChildSpec:
    port = free_port()
    argv = (sys.executable, "-c", SERVER, str(port))
    return ChildSpec(name=name, argv=argv, port=port, restart=restart)


def _script(name: str, code: str, *, restart: bool = False) -> ChildSpec:
    """A child that runs ``code`` (e.g. prints a line and dies) on a port of its own."""
    return ChildSpec(
        name=name, argv=(sys.executable, "-c", code), port=free_port(), restart=restart
    )


def _stack(supervisor: Supervisor) -> RunningStack:
    return RunningStack(
        StackSpec(gateway=False),
        supervisor,
        cloud_base_url="unused",
        cloud_model="unused",
        edge_urls=[],
        config_path=None,
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_terminates_whole_process_groups(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    children = [supervisor.start(_server(f"s{i}")) for i in range(2)]
    supervisor.wait_ready(children)
    assert all(_group_alive(child.pid) for child in children)

    supervisor.stop(grace_s=5)

    assert all(child.exited() for child in children)
    deadline = time.monotonic() + 5
    while any(_group_alive(child.pid) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_group_alive(child.pid) for child in children), "a grandchild survived"


def test_a_child_that_dies_during_startup_fails_fast_with_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    crashing = _script("crasher", "import sys; print('boom: no model'); sys.exit(3)")
    child = supervisor.start(crashing)
    started = time.monotonic()
    with pytest.raises(StackError, match="boom: no model"):
        supervisor.wait_ready([child])
    assert time.monotonic() - started < 10
    supervisor.stop()


def test_a_child_killed_by_a_signal_is_named_with_the_signal_and_its_log(
    tmp_path: Path,
) -> None:
    """What a llama.cpp kernel crash looks like to the supervisor: SIGSEGV after a log line."""
    supervisor = Supervisor(tmp_path)
    crashing = _script(
        "edge-1",
        "import os, signal; print('Loaded model.gguf', flush=True); "
        "os.kill(os.getpid(), signal.SIGSEGV)",
    )
    child = supervisor.start(crashing)
    with pytest.raises(StackError) as caught:
        supervisor.wait_ready([child])
    message = str(caught.value)
    assert message.startswith(f"edge-1 (pid {child.pid}) was killed by SIGSEGV")
    assert "Loaded model.gguf" in message
    supervisor.stop()


def test_wait_returns_nonzero_when_any_child_dies(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    children = [supervisor.start(_server(f"s{i}")) for i in range(2)]
    supervisor.wait_ready(children)
    with _stack(supervisor) as stack:
        os.killpg(children[1].pid, 9)
        assert stack.wait() == 1
    assert all(child.exited() for child in children)


def test_a_restartable_child_that_dies_is_started_again_and_serves(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    edge = supervisor.start(_server("edge-1", restart=True))
    cloud = supervisor.start(_server("cloud"))
    supervisor.wait_ready([edge, cloud])
    stack = _stack(supervisor)
    with stack:
        os.killpg(edge.pid, 9)
        # Two deaths of the edge are within the budget; the cloud's death stops the stack.
        waited: list[int] = []
        thread = threading.Thread(target=lambda: waited.append(stack.wait()), daemon=True)
        thread.start()
        again = _replacement(supervisor, edge)
        supervisor.wait_ready([again])  # the same port answers again
        assert again.spec == edge.spec
        assert again.log_path == edge.log_path
        deadline = time.monotonic() + 5  # the grandchild is gone once init reaps it
        while _group_alive(edge.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(edge.pid), "the dead child's group went with it"
        os.killpg(again.pid, 9)
        supervisor.wait_ready([_replacement(supervisor, again)])
        assert thread.is_alive(), "restarted edges keep the stack up"
        os.killpg(cloud.pid, 9)
        thread.join(timeout=10)
        assert waited == [1]
    assert all(child.exited() for child in supervisor.children)


def _replacement(supervisor: Supervisor, dead: object, timeout: float = 10.0) -> ChildProcess:
    """The child that took ``dead``'s place in the supervisor, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in supervisor.children:
            if child is not dead and child.name == getattr(dead, "name", None):
                return child
        time.sleep(0.05)
    raise AssertionError("the child was not restarted")


def test_a_child_that_keeps_dying_stops_the_stack(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    crashing = _script("edge-1", "import sys; print('bad model file'); sys.exit(3)", restart=True)
    supervisor.start(crashing)
    started = time.monotonic()
    with _stack(supervisor) as stack:
        assert stack.wait(RestartBudget(restarts=2, window_s=60)) == 1
    assert time.monotonic() - started < 20
    assert (tmp_path / "edge-1.log").read_text().count("bad model file") == 3


def test_the_restart_budget_counts_deaths_within_its_window() -> None:
    budget = RestartBudget(restarts=2, window_s=10.0)
    assert [budget.allows("edge-1", t) for t in (0.0, 1.0)] == [True, True]
    assert not budget.allows("edge-1", 2.0), "a third death within 10 s"
    assert budget.allows("edge-2", 2.0), "counted per child"
    assert budget.allows("edge-1", 11.5), "the deaths at 0 and 1 s have left the window"


def test_a_busy_port_is_refused_before_starting(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    first = supervisor.start(_server("first"))
    supervisor.wait_ready([first])
    clash = ChildSpec(name="clash", argv=("true",), port=first.spec.port)
    try:
        with pytest.raises(StackError, match="in use"):
            supervisor.start(clash)
    finally:
        supervisor.stop()


def test_core_plan_puts_cloud_and_edges_on_separate_cores() -> None:
    plan = plan_cores(2, pin=True, available=[0, 1])
    assert plan.cloud == "0"
    assert plan.edges == ("1", "1")
    wide = plan_cores(3, pin=True, available=[0, 1, 2, 3])
    assert wide.edges == ("1", "2", "3")
    assert plan_cores(2, pin=True, available=[0]).cloud is None
    assert plan_cores(2, pin=False, available=[0, 1]).edges == (None, None)


def test_generated_gateway_config_loads_as_gateway_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    spec = StackSpec(gateway_port=18000, api_keys=("k1-secret",))
    config = gateway_config(
        spec,
        "http://127.0.0.1:8100/v1",
        "qwen2.5-coder-1.5b-instruct",
        ["http://a:1", "http://b:2"],
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    # Secrets travel in the child's environment, never in the YAML on disk.
    env = gateway_env(spec, "edge-secret", "cloud-secret")
    text = path.read_text()
    assert not any(secret in text for secret in ("k1-secret", "edge-secret", "cloud-secret"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(path)
    assert settings.port == 18000
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1-secret"]
    assert settings.cloud.api_key is not None
    assert settings.cloud.api_key.get_secret_value() == "cloud-secret"
    assert [edge.token.get_secret_value() for edge in settings.edges if edge.token] == [
        "edge-secret",
        "edge-secret",
    ]
    assert settings.cloud.base_url == "http://127.0.0.1:8100/v1"
    assert settings.cloud.model == "qwen2.5-coder-1.5b-instruct"
    assert [(edge.name, edge.url) for edge in settings.edges] == [
        ("edge-1", "http://a:1"),
        ("edge-2", "http://b:2"),
    ]


class _RecordingSupervisor:
    """A Supervisor that records what it would start instead of starting it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[ChildSpec] = []

    def start(self, spec: ChildSpec) -> ChildSpec:
        self.children.append(spec)
        return spec

    def wait_ready(self, _: object) -> None:
        pass

    def stop(self) -> None:
        pass


def test_pice_up_gives_edges_cloud_and_gateway_a_fresh_token_outside_argv_and_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import pice_stack.stack as stack_module

    monkeypatch.setattr(
        stack_module,
        "resolve_model",
        lambda name, **_: SimpleNamespace(path=tmp_path / f"{name}.gguf", name=name),
    )
    monkeypatch.setattr(stack_module, "Supervisor", _RecordingSupervisor)
    tokens = []
    for run in range(2):
        run_dir = tmp_path / str(run)
        run_dir.mkdir()
        spec = StackSpec(run_dir=run_dir, pin=False, api_keys=("client-key",))
        running = stack_module.launch_stack(spec)
        children = {child.name: child for child in running.supervisor.children}
        token = children["edge-1"].env["PICE_EDGE_API_TOKEN"]
        assert len(token) >= 32
        assert children["edge-2"].env["PICE_EDGE_API_TOKEN"] == token
        assert children["cloud"].env["PICE_EDGE_API_TOKEN"] == token
        gateway_env = children["gateway"].env
        assert gateway_env["PICE_EDGE_CLIENT__TOKEN"] == token
        assert gateway_env["PICE_CLOUD__API_KEY"] == token
        assert gateway_env["PICE_API_KEYS"] == '["client-key"]'
        assert running.cloud_api_key == token
        assert all(token not in " ".join(child.argv) for child in children.values())
        yaml_text = (run_dir / "gateway.yaml").read_text()
        assert token not in yaml_text
        assert "client-key" not in yaml_text
        tokens.append(token)
    assert tokens[0] != tokens[1]
