"""``pice up --profile heterogeneous`` with real models: the slow edge is in its CPU quota, the
gateway reaches it through the link proxy, a progressive answer uses both edges, and Ctrl-C
removes the cgroup with the processes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from pice_stack.cgroup import CPU_ROOT, writable
from tests.integration.test_up import _consecutive_free_ports, wait_until_up
from tests.support.processes import free_port, pice_argv

pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
    pytest.mark.skipif(not writable(), reason=f"cgroup v1 cpu not writable at {CPU_ROOT}"),
]


def test_up_with_the_heterogeneous_profile(tmp_path: Path) -> None:
    gateway, cloud = free_port(), free_port()
    edge_base, link_base = _consecutive_free_ports(2), _consecutive_free_ports(2)
    run_dir = tmp_path / "run"
    log = tmp_path / "pice-up.out"
    argv = pice_argv(
        *("up", "--profile", "heterogeneous"),
        *("--cloud-model", "qwen2.5-coder-0.5b-instruct"),
        *("--edge-model", "qwen2.5-coder-0.5b-instruct-q8_0"),
        *("--port", str(gateway), "--cloud-port", str(cloud)),
        *("--edge-base-port", str(edge_base), "--link-base-port", str(link_base)),
        *("--run-dir", str(run_dir)),
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(proc, log)
        assert "profile  heterogeneous" in log.read_text()

        groups = list(CPU_ROOT.glob(f"pice-{proc.pid}-edge-2"))
        assert len(groups) == 1
        group = groups[0]
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "33000"
        assert (group / "cgroup.procs").read_text().split(), "edge-2 is in its quota"
        assert not list(CPU_ROOT.glob(f"pice-{proc.pid}-edge-1"))

        config = yaml.safe_load((run_dir / "gateway.yaml").read_text())
        urls = {e["name"]: e["url"] for e in config["edges"]}
        assert urls == {
            "edge-1": f"http://127.0.0.1:{edge_base}",
            "edge-2": f"http://127.0.0.1:{link_base + 1}",  # through link-2
        }

        client = OpenAI(base_url=f"http://127.0.0.1:{gateway}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="pice-progressive",
            messages=[{"role": "user", "content": "Give me three tips for better sleep."}],
            max_tokens=160,
            stream=True,
            timeout=600,
        )
        report = None
        for chunk in stream:
            report = (chunk.model_extra or {}).get("pice", report)
        assert report is not None
        assert {p["edge"] for p in report["points"]} == {"edge-1", "edge-2"}, report

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not group.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
