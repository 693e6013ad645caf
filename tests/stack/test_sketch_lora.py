"""``pice up --sketch-lora``: the cloud's arguments for each kind of cloud, and the gateway's
``cloud.sketch_model``; a path of the wrong kind fails before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pice_gateway.settings import GatewaySettings
from pice_stack.sketch_lora import (
    SKETCH_MODEL,
    SketchLoraError,
    edge_lora_args,
    sketch_lora_framed,
    vllm_lora_args,
    vllm_max_lora_rank,
)
from pice_stack.stack import StackSpec, cloud_lora_args, embedded_cloud_argv, gateway_config
from pice_stack.supervisor import StackError


def peft_dir(tmp_path: Path, rank: int = 8, name: str = "adapter") -> Path:
    adapter = tmp_path / name
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": rank, "target_modules": ["q_proj", "v_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return adapter


def adapter_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "adapter.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(32))
    return path


@pytest.mark.parametrize(
    ("rank", "expected"), [(1, 1), (2, 8), (8, 8), (9, 16), (33, 64), (300, 320), (512, 512)]
)
def test_the_rank_is_rounded_up_to_one_vllm_accepts(rank: int, expected: int) -> None:
    assert vllm_max_lora_rank(rank) == expected


def test_a_rank_above_vllms_largest_is_refused() -> None:
    with pytest.raises(SketchLoraError, match="above vLLM's largest"):
        vllm_max_lora_rank(513)


def test_vllm_serves_the_peft_directory_as_the_sketcher(tmp_path: Path) -> None:
    adapter = peft_dir(tmp_path, rank=12)
    assert vllm_lora_args(adapter) == (
        "--enable-lora",
        "--max-lora-rank",
        "16",
        "--lora-modules",
        f"pice-sketcher={adapter}",
    )


def test_a_path_with_a_comma_goes_to_vllm_as_json(tmp_path: Path) -> None:
    # vLLM splits NAME=PATH only when the item has no comma; otherwise it parses JSON.
    adapter = peft_dir(tmp_path, name="a,b")
    module = vllm_lora_args(adapter)[-1]
    assert json.loads(module) == {"name": SKETCH_MODEL, "path": str(adapter)}


def test_vllm_refuses_a_gguf_and_a_directory_without_a_peft_config(tmp_path: Path) -> None:
    with pytest.raises(SketchLoraError, match="is a GGUF; vLLM loads the peft adapter"):
        vllm_lora_args(adapter_gguf(tmp_path))
    with pytest.raises(SketchLoraError, match=r"no adapter_config\.json"):
        vllm_lora_args(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{}")
    with pytest.raises(SketchLoraError, match="no LoRA rank 'r'"):
        vllm_lora_args(bad)


def test_the_embedded_cloud_serves_the_gguf_as_a_named_module(tmp_path: Path) -> None:
    gguf = adapter_gguf(tmp_path)
    assert edge_lora_args(gguf) == ("--lora-module", f"pice-sketcher={gguf}")


def test_the_embedded_cloud_refuses_a_peft_directory_and_other_files(tmp_path: Path) -> None:
    with pytest.raises(SketchLoraError, match="is a directory; the embedded cloud loads"):
        edge_lora_args(peft_dir(tmp_path))
    other = tmp_path / "adapter.safetensors"
    other.write_bytes(b"\x00" * 16)
    with pytest.raises(SketchLoraError, match="is not a GGUF"):
        edge_lora_args(other)
    with pytest.raises(SketchLoraError, match="no such file"):
        edge_lora_args(tmp_path / "missing.gguf")


def test_the_stack_picks_the_arguments_of_its_cloud(tmp_path: Path) -> None:
    assert cloud_lora_args(StackSpec()) == ()
    gguf, adapter = adapter_gguf(tmp_path), peft_dir(tmp_path)
    assert cloud_lora_args(StackSpec(sketch_lora=gguf))[0] == "--lora-module"
    assert cloud_lora_args(StackSpec(cloud="vllm", sketch_lora=adapter))[0] == "--enable-lora"
    # The wrong kind for the cloud is a StackError, which `pice up` reports as one line.
    with pytest.raises(StackError):
        cloud_lora_args(StackSpec(cloud="vllm", sketch_lora=gguf))
    with pytest.raises(StackError):
        cloud_lora_args(StackSpec(sketch_lora=adapter))


def test_the_embedded_cloud_argv_ends_with_the_adapter(tmp_path: Path) -> None:
    spec = StackSpec(cloud_port=8100, threads=2)
    argv = embedded_cloud_argv(spec, Path("/m/cloud.gguf"), "cloud", ("--lora-module", "x=y"))
    assert argv[-14:] == (
        *("edge", "serve", "--model", "/m/cloud.gguf", "--model-id", "cloud"),
        *("--host", "127.0.0.1", "--port", "8100", "--threads", "2"),
        *("--lora-module", "x=y"),
    )


def test_the_gateway_names_the_sketcher_only_with_an_adapter(tmp_path: Path) -> None:
    plain = gateway_config(StackSpec(), "http://c/v1", "base", ["http://e"])
    assert "sketch_model" not in plain["cloud"]
    with_lora = gateway_config(
        StackSpec(sketch_lora=adapter_gguf(tmp_path)), "http://c/v1", "base", ["http://e"]
    )
    settings = GatewaySettings.model_validate(with_lora)
    assert settings.cloud.model == "base"
    assert settings.cloud.sketch_model == SKETCH_MODEL


def test_pice_up_with_the_wrong_kind_of_adapter_stops_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pice_cli.main import main

    run_dir = tmp_path / "run"
    code = main(["up", "--sketch-lora", str(peft_dir(tmp_path)), "--run-dir", str(run_dir)])
    assert code == 1
    err = capsys.readouterr().err
    assert "is a directory; the embedded cloud loads the llama.cpp adapter GGUF" in err
    # No child was started: the supervisor would have written its logs here.
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_the_gateway_frames_the_sketches_of_an_adapter_that_learnt_the_frame(
    tmp_path: Path,
) -> None:
    gguf = adapter_gguf(tmp_path)
    peft = peft_dir(tmp_path)

    def framed_by_gateway(path: Path) -> bool:
        config = gateway_config(StackSpec(sketch_lora=path), "http://c/v1", "base", ["http://e"])
        return GatewaySettings.model_validate(config).cloud.sketch_framed

    # No training record beside either: taken to have learnt the outline alone.
    assert not sketch_lora_framed(gguf)
    assert not framed_by_gateway(gguf)
    assert not sketch_lora_framed(peft)
    # pice tune export's metadata beside the GGUF; pice tune train's record beside run/adapter.
    gguf.with_name(gguf.name + ".json").write_text(json.dumps({"frame": True}))
    (tmp_path / "recipe.json").write_text(json.dumps({"recipe": {}, "frame": True}))
    assert sketch_lora_framed(gguf)
    assert framed_by_gateway(gguf)
    assert sketch_lora_framed(peft)
    assert framed_by_gateway(peft)
    gguf.with_name(gguf.name + ".json").write_text(json.dumps({"frame": False}))
    (tmp_path / "recipe.json").write_text("{not json")
    assert not sketch_lora_framed(gguf)
    assert not sketch_lora_framed(peft)
