"""Edge agent settings: defaults < YAML file (``--config``) < ``PICE_EDGE_*`` env < CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from pice.settings import YamlSettings, load_yaml_settings

# Q8_0 weights: llama.cpp's CPU kernels batch them about 2x better than the bundled file's
# Q5_0 mix, at no measured quality cost (docs/benchmarks-edge.md).
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
# llama.cpp's limit on sequence ids in one context (LLAMA_MAX_SEQ).
LLAMA_MAX_SEQUENCES = 256


def available_cpus() -> int:
    """CPUs this process may run on (a ``taskset`` pin counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class EdgeSettings(YamlSettings):
    model_config = SettingsConfigDict(env_prefix="PICE_EDGE_", extra="ignore")

    # A bundled model name, a path to a GGUF file, or a hub id (see pice.models.registry).
    model: str = DEFAULT_MODEL
    # The name clients use in "model"; defaults to the bundled name or the file's stem.
    model_id: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8101, ge=0, le=65535)
    threads: int = Field(default_factory=available_cpus, ge=1)
    n_ctx: int = Field(default=4096, ge=256)
    max_sequences: int = Field(default=16, ge=1, le=256)
    n_batch: int = Field(default=512, ge=16)
    # Recent prompt prefixes whose KV cells are kept for later requests (0 = off).
    prefix_cache_slots: int = Field(default=4, ge=0, le=64)
    # llama.cpp's AMX weight buffers crash on the first decode (edge_agent/engine/cpu.py); set
    # true only with a llama.cpp whose AMX path is fixed.
    allow_amx: bool = False
    # llama.cpp's extra weight buffers (its CPU repack kernels, and AMX where allowed). Which
    # is faster depends on the CPU and the weight format: benchmarks/extra_buffers.py measures.
    extra_buffers: bool = True
    # A llama.cpp LoRA adapter GGUF (``pice tune export``) applied to every decode, and its
    # scale (llama.cpp multiplies it by the adapter's alpha / rank).
    lora: Path | None = None
    lora_scale: float = Field(default=1.0, ge=0.0)
    api_token: str | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1)

    @model_validator(mode="after")
    def _batch_holds_every_sequence(self) -> EdgeSettings:
        # Every running sequence decodes one token per step, all in one batch.
        if self.n_batch < self.max_sequences:
            raise ValueError("n_batch must be at least max_sequences")
        if self.max_sequences + self.prefix_cache_slots > LLAMA_MAX_SEQUENCES:
            raise ValueError(
                f"max_sequences + prefix_cache_slots must be at most {LLAMA_MAX_SEQUENCES}"
            )
        return self


def load_settings(config: Path | None = None, **overrides: Any) -> EdgeSettings:
    """Settings from an optional YAML file, the environment and ``overrides`` (CLI flags)."""
    return load_yaml_settings(EdgeSettings, config, **overrides)
