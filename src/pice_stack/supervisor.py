"""Child processes started together, watched together and stopped together.

:class:`Supervisor` owns the children: it starts each in its own process group (so a signal
reaches the grandchildren too, such as vLLM's engine core), waits for their readiness
endpoints, restarts a child whose spec asks for it when it dies (:class:`RestartBudget` stops
a crash loop), and stops every one of them (SIGTERM to the group, then SIGKILL). Nothing here
knows what the children are; :mod:`pice_stack.stack` decides that.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pice_stack.cgroup import CgroupError, CpuQuota

logger = logging.getLogger(__name__)

_POLL_S = 0.5
_STOP_GRACE_S = 15.0


class StackError(RuntimeError):
    """A child failed to start or died; the message carries the tail of its log."""


@dataclass(frozen=True)
class ChildSpec:
    """One server to run: its command, where it listens and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"
    ready_path: str = "/ready"
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 300.0
    # Cores' worth of CPU time the child may use (a cgroup v1 cpu quota); None = no limit.
    cpu_quota: float | None = None
    # Started again when it dies, instead of stopping the stack (within a RestartBudget).
    restart: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if ``pice up`` itself is killed (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildProcess:
    """A started child in its own session, so signals reach its whole process group."""

    def __init__(self, spec: ChildSpec, log_path: Path, quota: CpuQuota | None = None) -> None:
        self.spec = spec
        self.log_path = log_path
        self.quota = quota
        self.started_at = time.monotonic()

        def before_exec() -> None:
            _die_with_parent()
            # Joined before exec, so every thread the server starts is inside the quota.
            if quota is not None:
                quota.join_self()

        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                start_new_session=True,
                preexec_fn=before_exec if sys.platform == "linux" else None,
            )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def is_ready(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.spec.url + self.spec.ready_path).status_code == 200
        except httpx.HTTPError:
            return False

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exit_report(self) -> str:
        """How the child ended and the last lines of its log, for the error that follows."""
        return (
            f"{self.name} (pid {self.pid}) {exit_description(self.proc.returncode)}; "
            f"last lines of its log {self.log_path}:\n{self.log_tail()}"
        )


@dataclass
class RestartBudget:
    """At most ``restarts`` restarts of one child within ``window_s``: a child that dies again
    and again (a bad model file, a port taken) is a crash loop, and stopping says so sooner
    than restarting it forever would."""

    restarts: int = 3
    window_s: float = 300.0
    _deaths: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)

    def allows(self, name: str, now: float) -> bool:
        """Record a death of ``name`` at ``now``; whether it may be restarted."""
        deaths = self._deaths.setdefault(name, deque())
        deaths.append(now)
        while deaths and deaths[0] <= now - self.window_s:
            deaths.popleft()
        return len(deaths) <= self.restarts


class Supervisor:
    """Starts children, waits until they are ready, restarts those that ask for it, and
    stops all of them together."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[ChildProcess] = []
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, spec: ChildSpec) -> ChildProcess:
        # Another server on the port would answer our readiness probe in the child's place.
        if not port_is_free(spec.host, spec.port):
            raise StackError(f"cannot start {spec.name}: {spec.host}:{spec.port} is in use")
        log_path = self.run_dir / f"{spec.name}.log"
        quota = None
        if spec.cpu_quota is not None:
            try:
                quota = CpuQuota.create(f"pice-{os.getpid()}-{spec.name}", spec.cpu_quota)
            except CgroupError as exc:
                raise StackError(f"cannot start {spec.name}: {exc}") from exc
            logger.info("%s limited to %.2f cores (%s)", spec.name, spec.cpu_quota, quota.path)
        logger.info("starting %s on port %d (log: %s)", spec.name, spec.port, log_path)
        logger.debug("%s argv: %s", spec.name, " ".join(spec.argv))
        try:
            child = ChildProcess(spec, log_path, quota)
        except BaseException:
            if quota is not None:
                quota.remove()
            raise
        self.children.append(child)
        return child

    def wait_ready(self, children: Sequence[ChildProcess]) -> None:
        """Block until every child answers its readiness path with 200.

        Raises :class:`StackError` as soon as one of them exits or overruns its timeout.
        """
        pending = list(children)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for child in list(pending):
                    if child.exited():
                        raise StackError(child.exit_report())
                    if child.is_ready(client):
                        waited = time.monotonic() - child.started_at
                        logger.info("%s is ready (%.1f s)", child.name, waited)
                        pending.remove(child)
                    elif time.monotonic() - child.started_at > child.spec.ready_timeout_s:
                        raise StackError(
                            f"{child.name} not ready after {child.spec.ready_timeout_s:.0f} s; "
                            f"log {child.log_path}:\n{child.log_tail()}"
                        )
                if pending:
                    time.sleep(_POLL_S)

    def restart(self, dead: ChildProcess, port_wait_s: float = 10.0) -> ChildProcess:
        """Start ``dead``'s spec again in its place (the same log, appended; the same CPU
        quota). Its readiness is not waited for: the gateway's poller takes an edge back once
        it answers. Raises :class:`StackError` if its port stays taken."""
        spec = dead.spec
        dead.signal_group(signal.SIGKILL)  # what it started, such as a worker, goes with it
        deadline = time.monotonic() + port_wait_s
        while not port_is_free(spec.host, spec.port):  # its sockets may linger a moment
            if time.monotonic() > deadline:
                raise StackError(f"cannot restart {spec.name}: {spec.host}:{spec.port} is in use")
            time.sleep(_POLL_S)
        child = ChildProcess(spec, dead.log_path, dead.quota)
        self.children[self.children.index(dead)] = child
        logger.info("restarted %s (pid %d, log: %s)", spec.name, child.pid, dead.log_path)
        return child

    def first_exited(self) -> ChildProcess | None:
        return next((child for child in self.children if child.exited()), None)

    def wait_any_exit(self) -> ChildProcess:
        """Block until one of the children exits, and return it."""
        while True:
            dead = self.first_exited()
            if dead is not None:
                return dead
            time.sleep(_POLL_S)

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """SIGTERM every group (the gateway first: it fronts the others), then SIGKILL."""
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", child.name, grace_s)
            # Grandchildren (vLLM's engine core) may outlive their parent: sweep the group.
            child.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)
            if child.quota is not None:
                child.quota.remove()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like uvicorn, so a port in TIME_WAIT counts as free and only a listener does not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def exit_description(returncode: int | None) -> str:
    """``exited with code 3`` or ``was killed by SIGSEGV (Segmentation fault)``."""
    if returncode is None:
        return "is still running"
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"was killed by signal {-returncode}"
    return f"was killed by {sig.name} ({signal.strsignal(sig) or sig.name})"
