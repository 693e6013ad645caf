"""Launch a real vLLM OpenAI server as PICE's cloud.

vLLM lives in its own virtual environment (it pins torch, transformers, fastapi and more),
so PICE never imports it: this module only *builds the command* for that environment's
python and prepares the checkpoint it needs. :class:`VllmServer` is the one description of
such a server, shared by ``pice up --cloud vllm``, the integration tests and the benchmarks,
which each run it with their own process supervisor.

Run as a module for the setup script or by hand::

    python -m pice.cloud.vllm prepare qwen2.5-coder-0.5b-instruct --venv .venv-vllm
    python -m pice.cloud.vllm serve qwen2.5-coder-0.5b-instruct --port 8100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pice.cloud import convert_gguf
from pice.errors import ModelProvisioningError
from pice.models.catalog import BUNDLED_MODELS, DERIVED_MODELS
from pice.models.provision import cache_lock
from pice.models.registry import ResolvedModel, default_cache_dir, resolve_model

logger = logging.getLogger(__name__)

VENV_ENV = "PICE_VLLM_VENV"
DEFAULT_VENV = Path(".venv-vllm")
CONVERT_TIMEOUT_S = 1800.0


def taskset_argv(argv: Sequence[str], cores: str | None) -> list[str]:
    """Prefix ``argv`` with ``taskset -c CORES`` when asked and taskset exists."""
    taskset = shutil.which("taskset")
    if cores is None or taskset is None:
        return list(argv)
    return [taskset, "-c", cores, *argv]


def find_vllm_venv(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$PICE_VLLM_VENV``, else ``./.venv-vllm``; it must have vLLM."""
    configured = os.environ.get(VENV_ENV)
    venv = explicit or (Path(configured) if configured else DEFAULT_VENV)
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "lib").exists():
        raise ModelProvisioningError(
            f"no vLLM environment at {venv}: create it with "
            f"`bash scripts/setup-vllm.sh {venv}` (or `make vllm-env`), or set {VENV_ENV}"
        )
    return venv.absolute()


def checkpoint_dir(name: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir if cache_dir is not None else default_cache_dir()) / "hf" / name


def ensure_checkpoint(model: ResolvedModel, venv: Path, cache_dir: Path | None = None) -> Path:
    """The safetensors checkpoint of ``model`` under ``<cache>/hf/<name>``, converting once.

    A catalogue model's checkpoint is named after its cache file, which keeps its name across
    a rename of the model, so an existing conversion is found rather than made again.
    """
    entry = BUNDLED_MODELS.get(model.name) or DERIVED_MODELS.get(model.name)
    out = checkpoint_dir(model.name if entry is None else entry.file_stem, cache_dir)
    if convert_gguf.is_converted(out, model.path):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(out.parent, out.name):
        if convert_gguf.is_converted(out, model.path):
            return out
        logger.info("converting %s to a vLLM checkpoint in %s (about a minute)", model.path, out)
        started = time.monotonic()
        argv = [
            str(venv / "bin" / "python"),
            convert_gguf.__file__,
            "--gguf",
            str(model.path),
            "--out",
            str(out),
        ]
        try:
            result = subprocess.run(argv, check=False, timeout=CONVERT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ModelProvisioningError(f"converting {model.name} timed out") from exc
        if result.returncode != 0 or not convert_gguf.is_converted(out, model.path):
            raise ModelProvisioningError(
                f"converting {model.path} for vLLM failed (exit {result.returncode})"
            )
        logger.info("converted %s in %.0f s", model.name, time.monotonic() - started)
    return out


# vLLM's tool-call parser by the checkpoint's ``model_type`` (its config.json). Qwen2 and
# Qwen2.5 (Coder included) write Hermes-style ``<tool_call>`` blocks: their chat template says so.
TOOL_CALL_PARSERS = {"qwen2": "hermes"}


def tool_call_parser(model_dir: Path) -> str | None:
    """The parser vLLM needs to return this checkpoint's tool calls, or None if not known."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return TOOL_CALL_PARSERS.get(model_type) if isinstance(model_type, str) else None


@dataclass(frozen=True)
class VllmServer:
    """How to run one vLLM OpenAI server; readiness is ``GET /health`` answering 200."""

    venv: Path
    model_dir: Path
    served_model_name: str
    port: int
    host: str = "127.0.0.1"
    max_model_len: int = 4096
    kvcache_gib: int = 2
    cores: str | None = None
    # Start-up on a small CPU machine is dominated by the warm-up: a dummy forward pass over
    # max_num_batched_tokens (vLLM's CPU default: 2048) after a torch.compile trace. Chunked
    # prefill keeps long prompts working with a smaller step, and eager mode skips the trace;
    # both cut minutes from start-up. Set enforce_eager=False to measure compiled decoding.
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 32
    enforce_eager: bool = True
    # With a parser, requests with ``tools`` get OpenAI ``tool_calls`` back
    # (``--enable-auto-tool-choice``); without one, vLLM refuses ``tool_choice: "auto"``.
    tool_call_parser: str | None = None
    extra_args: tuple[str, ...] = ()

    ready_path: ClassVar[str] = "/health"
    # About 140 s for the 0.5B model and 4 minutes for the 1.5B on a 2-core CPU machine.
    startup_timeout_s: ClassVar[float] = 900.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def argv(self) -> list[str]:
        command = [
            str(self.venv / "bin" / "python"),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-batched-tokens",
            str(self.max_num_batched_tokens),
            "--max-num-seqs",
            str(self.max_num_seqs),
            *(["--enforce-eager"] if self.enforce_eager else []),
            *(
                ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser]
                if self.tool_call_parser
                else []
            ),
            *self.extra_args,
        ]
        return taskset_argv(command, self.cores)

    def env(self) -> dict[str, str]:
        """Variables to add to the parent's environment for the server process."""
        env = {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(self.kvcache_gib),
        }
        if self.cores is not None:
            # vLLM's automatic binding keeps one CPU of its affinity mask for its scheduler;
            # pinned to a single core that leaves none for compute, so bind explicitly.
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cores
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        return env


def prepare_vllm_server(
    spec: str,
    *,
    port: int,
    venv: Path | None = None,
    cores: str | None = None,
    cache_dir: Path | None = None,
    pull: bool = True,
    served_model_name: str | None = None,
    max_model_len: int = 4096,
    kvcache_gib: int = 2,
) -> VllmServer:
    """Resolve ``spec``, find the vLLM environment, convert the checkpoint once: a server spec."""
    resolved = resolve_model(spec, pull=pull, cache_dir=cache_dir)
    env_dir = find_vllm_venv(venv)
    model_dir = ensure_checkpoint(resolved, env_dir, cache_dir)
    return VllmServer(
        venv=env_dir,
        model_dir=model_dir,
        served_model_name=served_model_name or resolved.name,
        port=port,
        cores=cores,
        max_model_len=max_model_len,
        kvcache_gib=kvcache_gib,
        tool_call_parser=tool_call_parser(model_dir),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pice.cloud.vllm")
    parser.add_argument("--venv", type=Path, default=None, help=f"default: ${VENV_ENV}")
    parser.add_argument("--cache-dir", type=Path, default=None)
    actions = parser.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser("prepare", help="pull and convert models for vLLM")
    prepare.add_argument("specs", nargs="+")
    serve = actions.add_parser("serve", help="run vLLM in the foreground")
    serve.add_argument("spec")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--cores", default=None, help="pin with taskset -c CORES")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.action == "prepare":
            env_dir = find_vllm_venv(args.venv)
            for spec in args.specs:
                resolved = resolve_model(spec, cache_dir=args.cache_dir)
                out = ensure_checkpoint(resolved, env_dir, args.cache_dir)
                sys.stdout.write(f"{resolved.name}: {out}\n")
            return 0
        server = prepare_vllm_server(
            args.spec, port=args.port, venv=args.venv, cores=args.cores, cache_dir=args.cache_dir
        )
    except ModelProvisioningError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    os.execve(server.argv()[0], server.argv(), {**os.environ, **server.env()})


if __name__ == "__main__":
    sys.exit(main())
