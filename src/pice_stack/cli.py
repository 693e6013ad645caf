"""``pice up``: its arguments, the banner it prints, and the signals that stop it."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from pice.errors import ModelProvisioningError
from pice_stack.profile import ProfileError, load_profile
from pice_stack.sketch_lora import SKETCH_MODEL
from pice_stack.stack import RunningStack, StackSpec, launch_stack
from pice_stack.supervisor import StackError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = StackSpec()
    parser = subparsers.add_parser(
        "up", help="run cloud, edge agents and gateway on this machine (Ctrl-C stops all)"
    )
    parser.add_argument("--port", type=int, default=defaults.gateway_port, help="gateway port")
    parser.add_argument("--edges", type=int, default=defaults.edges, help="edge agents (2)")
    parser.add_argument(
        "--cloud",
        choices=("edge", "vllm"),
        default=defaults.cloud,
        help="edge: llama.cpp stand-in (default); vllm: a real vLLM server",
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="testbed profile: a name in configs/testbed/ (homogeneous, heterogeneous, "
        "heterogeneous-isolated) or a "
        "YAML path; its edges replace --edges (docs/configuration.md, 'Testbed profiles')",
    )
    parser.add_argument(
        "--link-base-port",
        type=int,
        default=defaults.link_base_port,
        help="first link proxy port (profiles with links); edge i's link is this + i",
    )
    parser.add_argument("--cloud-model", default=defaults.cloud_model)
    parser.add_argument("--edge-model", default=defaults.edge_model)
    parser.add_argument("--cloud-port", type=int, default=defaults.cloud_port)
    parser.add_argument(
        "--edge-base-port",
        type=int,
        default=defaults.edge_base_port,
        help="first edge port; edge i listens on this + i",
    )
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help="CPU threads per model server (1)"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin servers to cores with taskset",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where the children's logs and the gateway config go",
    )
    parser.add_argument(
        "--vllm-venv",
        type=Path,
        default=None,
        help="vLLM environment (default: $PICE_VLLM_VENV or .venv-vllm)",
    )
    parser.add_argument(
        "--sketch-lora",
        type=Path,
        default=None,
        help="a sketcher LoRA the cloud serves as model pice-sketcher, named in the outline "
        "sketches: with --cloud vllm the peft adapter directory (pice tune train), with the "
        "embedded cloud the adapter GGUF (pice tune export)",
    )
    parser.add_argument(
        "--edge-lora",
        type=Path,
        default=None,
        help="a LoRA adapter GGUF (pice tune export) every edge applies to every decode "
        "(pice edge serve --lora), a profile's edges included",
    )
    parser.add_argument(
        "--edge-lora-scale",
        type=float,
        default=None,
        help="the edges' adapter scale (pice edge serve --lora-scale; default 1.0)",
    )
    parser.add_argument(
        "--edge-lora-merge",
        action="store_true",
        help="fold the adapter into each edge's model at start (pice edge serve --lora-merge): "
        "the stock model's speed; needs a Q8_0/Q5_0/F16 model",
    )
    parser.set_defaults(handler=run)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind alike, so one ``finally`` stops the children in both cases.

    SIGINT is installed explicitly too: a process started in the background by a
    non-interactive shell inherits SIGINT as ignored, and Python then never raises
    KeyboardInterrupt, so Ctrl-C (or ``kill -INT``) would leave the stack running.
    """
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile) if args.profile else None
    except ProfileError as exc:
        sys.stderr.write(f"pice up: {exc}\n")
        return 1
    spec = StackSpec(
        profile=profile,
        link_base_port=args.link_base_port,
        cloud=args.cloud,
        cloud_model=args.cloud_model,
        edge_model=args.edge_model,
        edges=args.edges,
        gateway_port=args.port,
        cloud_port=args.cloud_port,
        edge_base_port=args.edge_base_port,
        threads=args.threads,
        pin=args.pin,
        run_dir=args.run_dir or Path(tempfile.mkdtemp(prefix="pice-up-")),
        vllm_venv=args.vllm_venv,
        sketch_lora=args.sketch_lora,
        edge_lora=args.edge_lora,
        edge_lora_scale=args.edge_lora_scale,
        edge_lora_merge=args.edge_lora_merge,
    )
    # One line per readiness probe would bury the children's progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = sys.stdout
    out.write(f"pice up: logs in {spec.run_dir}\n")
    out.flush()
    stack: RunningStack | None = None
    with _sigterm_as_interrupt():
        try:
            stack = launch_stack(spec)
            out.write(_banner(stack))
            out.flush()
            code = stack.wait()
        except KeyboardInterrupt:
            code = 0
        except (ModelProvisioningError, StackError) as exc:
            sys.stderr.write(f"pice up: {exc}\n")
            code = 1
        finally:
            if stack is not None:
                # A second Ctrl-C must not cut the shutdown of the children short.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                out.write("pice up: stopping\n")
                out.flush()
                stack.stop()
    return code


_EXAMPLE_QUESTION = "Give me three tips for better sleep."
_EXAMPLE_BODY = {
    "model": "pice",
    "stream": True,
    "messages": [{"role": "user", "content": _EXAMPLE_QUESTION}],
}


def edge_adapter_summary(spec: StackSpec) -> str | None:
    """What the banner says of the edges' adapter: the name points report, file and scale."""
    if spec.edge_lora is None:
        return None
    # The agent names an adapter by its file's stem (``AdapterInfo.name``).
    scale = 1.0 if spec.edge_lora_scale is None else spec.edge_lora_scale
    merged = ", merged into the model" if spec.edge_lora_merge else ""
    return f"lora: {spec.edge_lora.stem} = {spec.edge_lora}, scale {scale:g}{merged}"


def _banner(stack: RunningStack) -> str:
    url = stack.gateway_url
    edges = ", ".join(stack.edge_urls)
    adapter = edge_adapter_summary(stack.spec)
    if adapter is not None:
        edges += f"   ({adapter})"
    profile = stack.spec.profile
    if profile is not None:
        edges += f"\n  profile  {profile.name}: {profile.description}"
    cloud = stack.cloud_model
    if stack.spec.sketch_lora is not None:
        cloud += f"; sketches: {SKETCH_MODEL} = {stack.spec.sketch_lora}"
    return f"""
PICE is up.
  gateway  {url}/v1   (models: pice, pice-progressive, pice-cloud)
  cloud    {stack.cloud_base_url}   ({cloud})
  edges    {edges}
  logs     {stack.run_dir}

Try it with curl:
  curl -N {url}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{json.dumps(_EXAMPLE_BODY)}'

or with the OpenAI SDK:
  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="unused")
  stream = client.chat.completions.create(
      model="pice", stream=True,
      messages=[{{"role": "user", "content": "{_EXAMPLE_QUESTION}"}}])
  for chunk in stream:
      print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)

Ctrl-C stops everything.
"""
