"""The edge agent installs and runs on Python 3.10, the Python of JetPack 6 (Jetson Orins).

The edge ships as its own distribution, ``pice-edge`` (packaging/edge/pyproject.toml), with
``requires-python >= 3.10``; the full ``pice`` distribution (with the gateway) needs 3.11. These
tests build a 3.10 virtual environment, install ``pice-edge`` into it the way an Orin would
(llama-cpp-python through scripts/install-llama-cpp.sh, whose wheelhouse makes every run after
the first reuse one build), and run the edge's tests there. They are skipped, saying so, where
no ``python3.10`` is found (on PATH, or in pyenv's versions).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGE_PYPROJECT = ROOT / "packaging" / "edge" / "pyproject.toml"
# The edge's test tier under 3.10: no weights; then the real agent serving the 0.5B model (a
# subprocess, about 10 s).
EDGE_TESTS = ["tests/edge", "-m", "not model"]
REAL_MODEL_TESTS = "tests/edge/test_service.py"
# The first test to use the 3.10 environment builds llama.cpp for it when the wheelhouse has no
# 3.10 wheel (a fresh machine): ~6 minutes on 2 quiet cores, over the suite's 600 s default when
# the machine is shared. pytest-timeout counts fixture set-up in the test's time.
BUILD_TIMEOUT = pytest.mark.timeout(1800)


def _python310() -> str | None:
    """A working ``python3.10``: on PATH, else under pyenv's versions. A pyenv shim on PATH
    fails when 3.10 is not the selected version, so each candidate is run once."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which("python3.10"), *map(str, sorted(pyenv.glob("3.10*/bin/python3.10")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return match[0].lower()


def test_the_edge_distribution_matches_the_root_one() -> None:
    """``pice-edge`` needs exactly the root's base dependencies and its ``edge`` extra, on
    Python 3.10; the root distribution (the gateway) stays on 3.11."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = tomllib.loads(EDGE_PYPROJECT.read_text())["project"]
    assert root["requires-python"] == ">=3.11"
    assert edge["requires-python"] == ">=3.10"
    assert sorted(edge["dependencies"]) == sorted(
        root["dependencies"] + root["optional-dependencies"]["edge"]
    )
    assert edge["optional-dependencies"]["otel"] == root["optional-dependencies"]["otel"]
    assert edge["scripts"] == root["scripts"]


def test_the_edge_type_checks_as_python310(tmp_path: Path) -> None:
    """mypy, told the target is 3.10, finds any 3.11-only API (``typing.Self``, ``datetime.UTC``,
    ``asyncio.timeout``, ``enum.StrEnum``, ``tomllib``...) in what pice-edge ships, including
    code paths no test runs. Needs no python3.10: typeshed knows each API's version."""
    packages = ["-p", "pice", "-p", "edge_agent", "-p", "pice_cli"]
    cache = ["--cache-dir", str(tmp_path / "mypy-cache")]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.10", *cache, *packages],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:]


@pytest.fixture(scope="module")
def venv310(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = _python310()
    if python is None:
        pytest.skip(
            "no python3.10 on PATH or under ~/.pyenv/versions: cannot test the edge on 3.10"
        )
    venv = tmp_path_factory.mktemp("py310") / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # The same script (and wheelhouse) as `make install`: llama.cpp built once, then reused.
    subprocess.run(["bash", "scripts/install-llama-cpp.sh", str(venv)], cwd=ROOT, check=True)
    subprocess.run([*pip, str(EDGE_PYPROJECT.parent)], cwd=ROOT, check=True)
    # What the edge's tests import beyond the package: the root's dev pins of these.
    wanted = {"pytest", "pytest-asyncio", "pytest-timeout", "openai", "httpx"}
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    test_deps = sorted({r for r in root["dev"] + root["gateway"] if _requirement_name(r) in wanted})
    subprocess.run([*pip, *test_deps], check=True)
    return venv


def _in_venv(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of this interpreter's environment may leak in: no PYTHONPATH to the 3.11 sources.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@BUILD_TIMEOUT
def test_the_installed_edge_runs_on_python310(venv310: Path, tmp_path: Path) -> None:
    python = str(venv310 / "bin" / "python")
    # Outside the repository, so these are the installed copies, not the checkout's.
    where = _in_venv(
        venv310,
        python,
        "-c",
        "import sys, pice, edge_agent, llama_cpp; "
        "print(sys.version_info[:2], pice.__file__, edge_agent.__file__)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith("(3, 10)")
    assert where.stdout.count("site-packages") == 2
    helped = _in_venv(
        venv310, str(venv310 / "bin" / "pice"), "edge", "serve", "--help", cwd=tmp_path
    )
    assert helped.returncode == 0, helped.stderr
    assert "--n-gpu-layers" in helped.stdout
    # The gateway is not part of pice-edge, and `pice` says only what this install has.
    top = _in_venv(venv310, str(venv310 / "bin" / "pice"), "--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert "edge" in top.stdout
    assert "gateway" not in top.stdout


def _pytest_in_venv(venv: Path, *args: str) -> None:
    """Run pytest with ``args`` in the 3.10 venv, from the checkout; it must pass something."""
    python = str(venv / "bin" / "python")
    run = _in_venv(venv, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\d+ passed", run.stdout)


@pytest.mark.slow
@BUILD_TIMEOUT
def test_the_edge_tests_pass_on_python310(venv310: Path) -> None:
    _pytest_in_venv(venv310, *EDGE_TESTS)


@pytest.mark.slow
@pytest.mark.model
@BUILD_TIMEOUT
def test_a_real_model_serves_on_python310(venv310: Path) -> None:
    _pytest_in_venv(venv310, REAL_MODEL_TESTS)
