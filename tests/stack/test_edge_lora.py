"""``pice up --edge-lora``: every edge's arguments, the refusals before anything starts, the
banner, and ``pice bench`` passing the flags through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pice_stack.stack as stack_module
from pice.models.registry import ResolvedModel
from pice_cli.main import build_parser
from pice_stack.cli import edge_adapter_summary
from pice_stack.lora import EdgeLoraError, LoraPathError, edge_adapter_args
from pice_stack.profile import load_profile
from pice_stack.sketch_lora import SketchLoraError
from pice_stack.stack import StackSpec, edges_lora_args
from pice_stack.supervisor import ChildSpec, StackError
from tests.stack.test_sketch_lora import adapter_gguf, peft_dir


def test_every_edge_applies_the_gguf_to_every_decode(tmp_path: Path) -> None:
    gguf = adapter_gguf(tmp_path)
    assert edge_adapter_args(gguf) == ("--lora", str(gguf))
    assert edge_adapter_args(gguf, 0.25) == ("--lora", str(gguf), "--lora-scale", "0.25")
    # A scale reaches the agent as the same float, not rounded to six digits.
    assert float(edge_adapter_args(gguf, 0.123456789)[-1]) == 0.123456789


def test_a_relative_path_reaches_the_edges_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter_gguf(tmp_path)
    monkeypatch.chdir(tmp_path)
    # The children may run elsewhere (their run directory): the path must not depend on it.
    assert edge_adapter_args(Path("adapter.gguf")) == ("--lora", str(tmp_path / "adapter.gguf"))


def test_the_wrong_kind_of_path_is_refused_with_the_flag_named(tmp_path: Path) -> None:
    with pytest.raises(EdgeLoraError, match=r"^--edge-lora .* is a directory; the edge agent"):
        edge_adapter_args(peft_dir(tmp_path))
    other = tmp_path / "adapter.safetensors"
    other.write_bytes(b"\x00" * 16)
    with pytest.raises(EdgeLoraError, match=r"^--edge-lora .* is not a GGUF"):
        edge_adapter_args(other)
    with pytest.raises(EdgeLoraError, match=r"^--edge-lora .*: no such file"):
        edge_adapter_args(tmp_path / "missing.gguf")


@pytest.mark.parametrize("scale", [-0.5, float("nan"), float("inf")])
def test_a_scale_the_agent_would_refuse_is_refused_first(tmp_path: Path, scale: float) -> None:
    with pytest.raises(EdgeLoraError, match="--edge-lora-scale"):
        edge_adapter_args(adapter_gguf(tmp_path), scale)


def test_both_adapter_errors_are_stack_errors_of_one_family() -> None:
    # `pice up` and `pice bench` report a StackError as one line and exit 1.
    assert issubclass(EdgeLoraError, LoraPathError)
    assert issubclass(SketchLoraError, LoraPathError)
    assert issubclass(LoraPathError, StackError)


def test_the_stack_gives_the_edges_no_adapter_unless_asked(tmp_path: Path) -> None:
    assert edges_lora_args(StackSpec()) == ()
    gguf = adapter_gguf(tmp_path)
    assert edges_lora_args(StackSpec(edge_lora=gguf, edge_lora_scale=2.0)) == (
        *("--lora", str(gguf), "--lora-scale", "2.0"),
    )
    with pytest.raises(EdgeLoraError, match="--edge-lora-scale needs --edge-lora"):
        edges_lora_args(StackSpec(edge_lora_scale=0.5))
    merged = StackSpec(edge_lora=gguf, edge_lora_merge=True)
    assert edges_lora_args(merged) == ("--lora", str(gguf), "--lora-merge")
    with pytest.raises(EdgeLoraError, match="--edge-lora-merge needs --edge-lora"):
        edges_lora_args(StackSpec(edge_lora_merge=True))


def test_pice_up_parses_the_flags() -> None:
    args = build_parser().parse_args(["up", "--edge-lora", "a.gguf", "--edge-lora-scale", "0.5"])
    assert (args.edge_lora, args.edge_lora_scale) == (Path("a.gguf"), 0.5)
    plain = build_parser().parse_args(["up"])
    assert (plain.edge_lora, plain.edge_lora_scale, plain.edge_lora_merge) == (None, None, False)
    assert build_parser().parse_args(["up", "--edge-lora-merge"]).edge_lora_merge is True


@pytest.mark.parametrize("extra", [[], ["--edge-lora-scale", "-1"]])
def test_pice_up_with_the_wrong_kind_of_edge_adapter_stops_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    from pice_cli.main import main

    run_dir = tmp_path / "run"
    bad = tmp_path / "missing.gguf" if extra == [] else adapter_gguf(tmp_path)
    code = main(["up", "--edge-lora", str(bad), *extra, "--run-dir", str(run_dir)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("pice up: --edge-lora")
    # No child was started: the supervisor would have written its logs here.
    assert not run_dir.exists() or not any(run_dir.iterdir())


class _Started(Exception):
    """Raised by the stubbed supervisor once the launcher has built every child."""


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[ChildSpec]:
    """The child specs launch_stack starts (no process is started; models are stubbed)."""
    started: list[ChildSpec] = []

    def resolve(name: str, **_: Any) -> ResolvedModel:
        return ResolvedModel(name=name, path=tmp_path / f"{name}.gguf")

    class FakeSupervisor:
        def __init__(self, run_dir: Path) -> None:
            self.children: list[Any] = []

        def start(self, child: ChildSpec) -> ChildSpec:
            started.append(child)
            return child

        def wait_ready(self, specs: list[ChildSpec]) -> None:
            raise _Started

        def stop(self) -> None:
            pass

    monkeypatch.setattr(stack_module, "resolve_model", resolve)
    monkeypatch.setattr(stack_module, "Supervisor", FakeSupervisor)
    return started


def _launch(spec: StackSpec) -> None:
    with pytest.raises(_Started):
        stack_module.launch_stack(spec)


def test_every_edge_of_a_profile_serves_the_adapter_and_the_cloud_does_not(
    tmp_path: Path, children: list[ChildSpec]
) -> None:
    gguf = adapter_gguf(tmp_path)
    _launch(
        StackSpec(
            profile=load_profile("heterogeneous"),
            edge_lora=gguf,
            edge_lora_scale=0.5,
            pin=False,
            run_dir=tmp_path / "run",
        )
    )
    by_name = {child.name: child for child in children}
    edges = [by_name["edge-1"], by_name["edge-2"]]
    for edge in edges:
        assert edge.argv[-4:] == ("--lora", str(gguf), "--lora-scale", "0.5")
    assert "--lora" not in by_name["cloud"].argv
    # The link proxy in front of edge-2 is no model server.
    assert "--lora" not in by_name["link-2"].argv


def test_without_the_flag_no_edge_gets_an_adapter(
    tmp_path: Path, children: list[ChildSpec]
) -> None:
    _launch(StackSpec(edges=2, pin=False, run_dir=tmp_path / "run"))
    assert [c.name for c in children] == ["cloud", "edge-1", "edge-2"]
    assert not any("--lora" in child.argv for child in children)


def test_the_banner_names_the_adapter_as_the_points_will(tmp_path: Path) -> None:
    assert edge_adapter_summary(StackSpec()) is None
    gguf = adapter_gguf(tmp_path)
    summary = edge_adapter_summary(StackSpec(edge_lora=gguf))
    assert summary == f"lora: adapter = {gguf}, scale 1"
    assert edge_adapter_summary(StackSpec(edge_lora=gguf, edge_lora_scale=0.5)) == (
        f"lora: adapter = {gguf}, scale 0.5"
    )
    merged = edge_adapter_summary(StackSpec(edge_lora=gguf, edge_lora_merge=True))
    assert merged == f"lora: adapter = {gguf}, scale 1, merged into the model"


def test_pice_bench_passes_the_flags_to_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pice_bench.stack as bench_stack_module
    from pice_bench.main import systems_under_test

    seen: list[Any] = []

    @contextlib.contextmanager
    def fake_bench_stack(spec: Any) -> Iterator[Any]:
        seen.append(spec)
        raise _Started
        yield  # pragma: no cover

    monkeypatch.setattr(bench_stack_module, "bench_stack", fake_bench_stack)
    gguf = adapter_gguf(tmp_path)
    args = build_parser().parse_args(
        ["bench", "--edge-lora", str(gguf), "--edge-lora-scale", "0.75", "--out", str(tmp_path)]
    )
    with pytest.raises(_Started), systems_under_test(args):
        pass
    assert (seen[0].edge_lora, seen[0].edge_lora_scale) == (gguf, 0.75)
    assert seen[0].edge_lora_merge is False
    merged = build_parser().parse_args(
        ["bench", "--edge-lora", str(gguf), "--edge-lora-merge", "--out", str(tmp_path)]
    )
    with pytest.raises(_Started), systems_under_test(merged):
        pass
    assert seen[1].edge_lora_merge is True
