"""CPU quotas: the arithmetic, and a real cgroup that holds a busy child under its quota."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pice_stack.cgroup import CPU_ROOT, CpuQuota, quota_us, writable
from pice_stack.supervisor import ChildSpec, StackError, Supervisor
from tests.support.processes import free_port

needs_cgroups = pytest.mark.skipif(
    not writable(), reason=f"cgroup v1 cpu controller not writable at {CPU_ROOT}"
)

# Spins for ``wall`` seconds of wall-clock time, then prints the CPU time it actually got.
BUSY = """
import time
wall = float(__import__("sys").argv[1])
end = time.monotonic() + wall
while time.monotonic() < end:
    pass
print(time.process_time())
"""


def test_quota_arithmetic() -> None:
    assert quota_us(0.33) == 33_000
    assert quota_us(2.0) == 200_000
    assert quota_us(0.001) == 1_000  # the kernel's floor
    with pytest.raises(ValueError, match="positive"):
        quota_us(0)


def test_a_missing_controller_is_not_writable(tmp_path: Path) -> None:
    assert not writable(tmp_path)


@needs_cgroups
def test_a_quota_holds_a_cpu_bound_child_under_its_share() -> None:
    quota = CpuQuota.create(f"pice-test-{time.monotonic_ns()}", 0.2)
    wall = 1.5
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", BUSY, str(wall)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=quota.join_self,
        )
        assert proc.pid in quota.pids()
        out, _ = proc.communicate(timeout=60)
    finally:
        quota.remove()
    cpu = float(out)
    # Unlimited, a spinning child gets up to the whole 1.5 s of a core; at 0.2 cores it gets
    # 0.3 s at most (plus a period of slack and the interpreter's start-up before the loop).
    assert cpu <= 0.2 * wall + 0.15
    assert not quota.path.exists()


@needs_cgroups
def test_the_supervisor_puts_a_child_in_its_quota_and_removes_it_on_stop(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(tmp_path)
    spec = ChildSpec(
        name="busy",
        argv=(sys.executable, "-c", BUSY, "30"),
        port=free_port(),
        cpu_quota=0.1,
    )
    child = supervisor.start(spec)
    try:
        assert child.quota is not None
        assert child.quota.cores == 0.1
        assert child.pid in child.quota.pids()
        path = child.quota.path
        assert (path / "cpu.cfs_quota_us").read_text().strip() == "10000"
    finally:
        supervisor.stop(grace_s=2.0)
    assert not path.exists()


def test_a_quota_without_cgroups_is_a_stack_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pice_stack.cgroup as cgroup

    monkeypatch.setattr(cgroup, "writable", lambda root=CPU_ROOT: False)
    spec = ChildSpec(name="x", argv=(sys.executable, "-c", "0"), port=free_port(), cpu_quota=0.5)
    with pytest.raises(StackError, match="cgroup"):
        Supervisor(tmp_path).start(spec)
