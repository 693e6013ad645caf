"""``pice edge bench --lora``: the adapter reaches every part of the benchmark.

No model and no timing: the parts that load llama.cpp are replaced by recorders, and what is
checked is that the adapter the flags name is the one each part would load (the engine's
config, the raw decoder's context, the chat server's command line) and that the JSON says so.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

import edge_agent.bench as bench
import edge_agent.engine.chat_template as chat_template
import edge_agent.engine.llama as llama
from edge_agent.bench import (
    Adapter,
    RawDecoder,
    Row,
    adapter_from_args,
    add_bench_arguments,
    expand_config,
    run_from_args,
    serve_argv,
)
from pice.command import CLI_MODULE
from pice.errors import ModelProvisioningError
from pice_cli.main import build_parser


def bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def adapter_file(tmp_path: Path) -> Path:
    path = tmp_path / "adapter.gguf"
    path.write_bytes(b"GGUF")  # only its existence is checked before a model is loaded
    return path


def test_no_lora_flag_means_the_stock_model() -> None:
    args = bench_args()
    assert args.lora is None
    assert adapter_from_args(args) is None
    config = expand_config(1, [1, 8], None)
    assert config.lora is None
    assert config.lora_scale == 1.0


def test_the_flags_name_the_adapter_and_its_scale(adapter_file: Path) -> None:
    args = bench_args("--lora", str(adapter_file), "--lora-scale", "0.5")
    assert adapter_from_args(args) == Adapter(adapter_file, 0.5)
    # Without --lora-scale, llama.cpp's own default of 1.
    assert adapter_from_args(bench_args("--lora", str(adapter_file))) == Adapter(adapter_file, 1.0)


def test_pice_edge_bench_accepts_the_flags(adapter_file: Path) -> None:
    args = build_parser().parse_args(
        ["edge", "bench", "--lora", str(adapter_file), "--lora-scale", "0.25"]
    )
    assert adapter_from_args(args) == Adapter(adapter_file, 0.25)


def test_a_missing_adapter_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    args = bench_args("--lora", str(tmp_path / "absent.gguf"), "--chats", "0")
    with pytest.raises(ModelProvisioningError, match=r"absent\.gguf"):
        run_from_args(args, io.StringIO())


def test_the_expansion_engine_applies_the_adapter(adapter_file: Path) -> None:
    config = expand_config(1, [1, 4, 8], Adapter(adapter_file, 0.5))
    assert config.lora == adapter_file
    assert config.lora_scale == 0.5
    # The rest is what the stock rows run with: no prefix cache, room for every point.
    assert config.prefix_cache_slots == 0
    assert config.max_sequences == 16


def test_the_chat_server_is_started_with_the_same_adapter(adapter_file: Path) -> None:
    argv = serve_argv("m", 8123, 1, Adapter(adapter_file, 0.5))
    assert argv[1:3] == ("-m", CLI_MODULE)
    # The command line means what it should to `pice edge serve` itself.
    served = build_parser().parse_args(list(argv[3:]))
    assert (served.lora, served.lora_scale) == (adapter_file, 0.5)
    assert (served.model, served.port, served.threads) == ("m", 8123, 1)
    stock = build_parser().parse_args(list(serve_argv("m", 8123, 1, None)[3:]))
    assert stock.lora is None


def test_every_part_of_a_run_gets_the_adapter_and_the_json_names_it(
    adapter_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = argparse.Namespace(adapters=[])

    def fake_expand(*args: Any) -> list[Row]:
        seen.adapters.append(("expand", args[-1]))
        return [Row("expand", 1, "batched", 10, 1.0, 5.0, 5.0)]

    def fake_raw(*args: Any) -> list[Row]:
        seen.adapters.append(("raw", args[-1]))
        return []

    def fake_start(model: str, threads: int, adapter: Adapter | None) -> tuple[Any, str]:
        seen.adapters.append(("server", adapter))

        class Proc:
            def terminate(self) -> None: ...
            def wait(self, timeout: float) -> int:
                return 0

        return Proc(), "http://127.0.0.1:1"

    def fake_chats(*args: Any) -> list[Row]:
        return []

    monkeypatch.setattr(bench, "run_expand", fake_expand)
    monkeypatch.setattr(bench, "run_raw", fake_raw)
    monkeypatch.setattr(bench, "_start_server", fake_start)
    monkeypatch.setattr(bench, "run_chats", fake_chats)
    out = tmp_path / "bench.json"
    args = bench_args(
        *("--lora", str(adapter_file), "--lora-scale", "0.5", "--points", "1"),
        *("--chats", "2", "--raw-sequences", "2", "--out", str(out)),
    )
    printed = io.StringIO()
    assert run_from_args(args, printed) == 0

    expected = Adapter(adapter_file, 0.5)
    assert seen.adapters == [("expand", expected), ("raw", expected), ("server", expected)]
    assert json.loads(out.read_text())["adapter"] == {"path": str(adapter_file), "scale": 0.5}
    assert f"lora={adapter_file} scale=0.5" in printed.getvalue()

    # And a stock run records none.
    seen.adapters.clear()
    assert run_from_args(bench_args("--points", "1", "--out", str(out)), io.StringIO()) == 0
    assert {a for _, a in seen.adapters} == {None}
    assert json.loads(out.read_text())["adapter"] is None


def test_the_raw_decoder_sets_the_adapter_on_its_context(
    adapter_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[tuple[Any, float]] = []

    class FakeModel:
        def __init__(self, path: Path, **kwargs: Any) -> None:
            self.path = path

        def load_adapter(self, path: Path) -> str:
            return f"loaded:{path}"

        def tokenize(self, text: str, **kwargs: Any) -> list[int]:
            return [1, 2, 3]

    class FakeContext:
        def __init__(self, model: FakeModel, config: Any) -> None: ...

        def set_adapter(self, adapter: Any, scale: float) -> None:
            applied.append((adapter, scale))

    class FakeRenderer:
        @classmethod
        def from_model(cls, model: Any) -> Any:
            return cls()

        def render(self, messages: Any, tools: Any = ()) -> Any:
            return argparse.Namespace(text="prompt", add_special=True)

    monkeypatch.setattr(llama, "LlamaModel", FakeModel)
    monkeypatch.setattr(llama, "LlamaContext", FakeContext)
    monkeypatch.setattr(llama, "TokenBatch", lambda capacity, n_seq_max: object())
    monkeypatch.setattr(chat_template, "ChatRenderer", FakeRenderer)

    RawDecoder(Path("model.gguf"), 1, 8, adapter=Adapter(adapter_file, 0.5))
    assert applied == [(f"loaded:{adapter_file}", 0.5)]
    RawDecoder(Path("model.gguf"), 1, 8)
    assert len(applied) == 1  # the stock decoder applies nothing
