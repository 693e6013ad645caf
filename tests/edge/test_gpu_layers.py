"""``n_gpu_layers`` (``--n-gpu-layers``, ``PICE_EDGE_N_GPU_LAYERS``) reaches llama.cpp's model
parameters: flag -> settings -> engine config -> model loader. No weights and no GPU needed; the
loader is replaced by one that records the parameters it was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import edge_agent.engine.engine as engine_module
import edge_agent.engine.llama as llama_module
from edge_agent.api.app import engine_config
from edge_agent.engine.engine import Engine, EngineConfig
from edge_agent.engine.llama import LlamaModel
from edge_agent.settings import EdgeSettings, load_settings
from pice.errors import ModelProvisioningError
from pice_cli.main import build_parser


def test_the_flag_and_the_environment_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EdgeSettings().n_gpu_layers == 0
    args = build_parser().parse_args(["edge", "serve", "--n-gpu-layers", "-1"])
    assert load_settings(None, n_gpu_layers=args.n_gpu_layers).n_gpu_layers == -1
    monkeypatch.setenv("PICE_EDGE_N_GPU_LAYERS", "20")
    assert EdgeSettings().n_gpu_layers == 20
    with pytest.raises(ValidationError):
        EdgeSettings(n_gpu_layers=-2)


def test_the_engine_config_carries_it() -> None:
    assert engine_config(EdgeSettings(n_gpu_layers=-1)).n_gpu_layers == -1


class Stop(Exception):
    """Raised by the recorders once they have what the test needs."""


def test_the_engine_loads_its_model_with_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def recording_model(path: Path, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(engine_module, "LlamaModel", recording_model)
    with pytest.raises(Stop):
        Engine(tmp_path / "m.gguf", EngineConfig(n_gpu_layers=-1)).start()
    assert seen["n_gpu_layers"] == -1


@pytest.mark.parametrize("layers", [0, -1, 12])
def test_the_model_loader_gets_it_in_llama_model_params(
    layers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given: list[int] = []

    def load_from_file(path: bytes, params: Any) -> None:
        given.append(params.n_gpu_layers)
        return None  # what llama.cpp returns for a file it cannot load

    monkeypatch.setattr(llama_module.llama_cpp, "llama_model_load_from_file", load_from_file)
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    with pytest.raises(ModelProvisioningError):
        LlamaModel(weights, n_gpu_layers=layers)
    assert given == [layers]
