"""A CPU quota for a child process: a cgroup v1 ``cpu`` group with ``cfs_quota_us`` set.

The testbed makes one edge slower than another the way a smaller device is slower: it gets
less CPU time. A quota of 0.33 cores lets the group's threads run 33 ms in every 100 ms period,
whatever else the machine is doing, which slows a llama.cpp decode loop by about that factor.
Threads and a different model would change more than the speed (the batch behaviour, the
answers); a quota changes only the speed.

Needs the v1 ``cpu`` controller mounted (``/sys/fs/cgroup/cpu``) and the right to create
groups in it (root). A child joins its group before it execs (:meth:`CpuQuota.join_self`), so
every thread it ever starts is inside.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
# The kernel refuses quotas under 1 ms.
MIN_QUOTA_US = 1_000


class CgroupError(RuntimeError):
    """The quota cannot be set up here (no v1 cpu controller, or no right to write it)."""


def quota_us(cores: float, period_us: int = PERIOD_US) -> int:
    """Microseconds of CPU per period for ``cores`` cores' worth of time."""
    if cores <= 0:
        raise ValueError(f"cpu quota must be positive, got {cores}")
    return max(MIN_QUOTA_US, round(cores * period_us))


def writable(root: Path = CPU_ROOT) -> bool:
    """Whether groups can be made under ``root`` (the v1 cpu controller, as root)."""
    return (root / "cpu.cfs_quota_us").exists() and os.access(root, os.W_OK)


class CpuQuota:
    """One cgroup under the cpu controller, limited to ``cores`` cores."""

    def __init__(self, path: Path, cores: float) -> None:
        self.path = path
        self.cores = cores

    @classmethod
    def create(cls, name: str, cores: float, root: Path = CPU_ROOT) -> CpuQuota:
        if not writable(root):
            raise CgroupError(
                f"a CPU quota needs the cgroup v1 cpu controller at {root}, writable (root)"
            )
        path = root / name
        try:
            path.mkdir(exist_ok=True)
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota_us(cores)))
        except OSError as exc:
            raise CgroupError(f"cannot set up cgroup {path}: {exc}") from exc
        return cls(path, cores)

    def join_self(self) -> None:
        """Move the calling process into the group (a child calls it before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def throttled_periods(self) -> int:
        """Periods in which the group ran out of quota (``cpu.stat`` nr_throttled)."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return 0

    def remove(self) -> None:
        """Delete the group; any process still in it goes back to the parent group first."""
        parent_procs = self.path.parent / "cgroup.procs"
        for pid in self.pids():
            with contextlib.suppress(OSError):
                parent_procs.write_text(str(pid))
        with contextlib.suppress(OSError):
            self.path.rmdir()
