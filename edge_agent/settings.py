"""Edge agent settings: defaults < YAML file (``--config``) < ``PICE_EDGE_*`` env < CLI flags."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from pice.channel_protocol import connect_url
from pice.edge_protocol import EDGE_NAME_PATTERN, check_edge_url
from pice.logs import LogFormat
from pice.security import OptionalSecret, is_loopback, secret_or_file
from pice.settings import YamlSettings, load_yaml_settings
from pice.tracing import TracingSettings

# Q8_0 weights: llama.cpp's CPU kernels batch them about 2x better than the bundled file's
# Q5_0 mix, at no measured quality cost (docs/benchmarks-edge.md).
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q8_0"
# llama.cpp's limit on sequence ids in one context (LLAMA_MAX_SEQ).
LLAMA_MAX_SEQUENCES = 256


# A model name clients put in "model" for a named adapter: no commas (the environment's list
# separator), no "=" (the flag's separator).
LORA_MODULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"


class LoraModule(BaseModel):
    """A LoRA adapter served under its own model name (``--lora-module NAME=PATH[:SCALE]``).

    A chat request whose "model" is ``name`` decodes with this adapter (on top of ``lora``, if
    set); the base model's name decodes without it.
    """

    name: str = Field(pattern=LORA_MODULE_NAME_PATTERN)
    path: Path
    scale: float = Field(default=1.0, ge=0.0)

    @classmethod
    def parse(cls, text: str) -> LoraModule:
        """``NAME=PATH[:SCALE]``; a PATH ending in ``:X`` where X is no number keeps it."""
        name, eq, rest = text.partition("=")
        if not eq or not name or not rest:
            raise ValueError(f"a LoRA module is NAME=PATH[:SCALE], not {text!r}")
        path, colon, tail = rest.rpartition(":")
        if colon and path:
            try:
                return cls(name=name, path=Path(path), scale=float(tail))
            except ValueError:
                pass  # a colon inside the path
        return cls(name=name, path=Path(rest))


def host_edge_name(hostname: str) -> str:
    """The default edge name: the machine's host name, made a valid edge name.

    One default for joining and dialling. The host name is the device's own: stable across
    restarts and redeployments (a container on the host network, or a Kubernetes pod with
    ``hostNetwork``, has the node's), and unique per device in a fleet. A name from the
    address would change with a DHCP lease and, for a dialling edge whose address is loopback,
    be the same on every device (and a second edge under a name in use replaces the first).
    """
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in hostname)
    if not name[:1].isalnum():  # empty, or starting with ".", "_" or "-"
        name = f"edge-{name}" if name else "edge"
    return name[:63]


def available_cpus() -> int:
    """CPUs this process may run on (a ``taskset`` pin counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class EdgeSettings(YamlSettings):
    # Nested fields use ``__`` (``PICE_EDGE_TRACING__ENABLED``), as the gateway's do.
    model_config = SettingsConfigDict(
        env_prefix="PICE_EDGE_", env_nested_delimiter="__", extra="ignore"
    )

    # A bundled model name, a path to a GGUF file, or a hub id (see pice.models.registry).
    model: str = DEFAULT_MODEL
    # The name clients use in "model"; defaults to the bundled name or the file's stem.
    model_id: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8101, ge=0, le=65535)
    threads: int = Field(default_factory=available_cpus, ge=1)
    n_ctx: int = Field(default=4096, ge=256)
    max_sequences: int = Field(default=16, ge=1, le=256)
    # Jobs submitted and not yet admitted by the batcher (waiting for slots or KV cells); past
    # this, /v1/expand answers 429 with Retry-After and the gateway places the work elsewhere.
    # None = unbounded.
    max_queued_jobs: int | None = Field(default=32, ge=1)
    n_batch: int = Field(default=512, ge=16)
    # Recent prompt prefixes whose KV cells are kept for later requests (0 = off).
    prefix_cache_slots: int = Field(default=4, ge=0, le=64)
    # llama.cpp's AMX weight buffers crash on the first decode (edge_agent/engine/cpu.py); set
    # true only with a llama.cpp whose AMX path is fixed.
    allow_amx: bool = False
    # llama.cpp's extra weight buffers (its CPU repack kernels, and AMX where allowed). Which
    # is faster depends on the CPU and the weight format: benchmarks/extra_buffers.py measures.
    extra_buffers: bool = True
    # Layers llama.cpp puts on the GPU when it was built with one (CUDA on a Jetson Orin:
    # docs/orin.md); -1 = all, 0 = none (CPU). A CPU-only build ignores it.
    n_gpu_layers: int = Field(default=0, ge=-1)
    # A llama.cpp LoRA adapter GGUF (``pice tune export``) applied to every decode, and its
    # scale (llama.cpp multiplies it by the adapter's alpha / rank).
    lora: Path | None = None
    lora_scale: float = Field(default=1.0, ge=0.0)
    # Fold ``lora`` into the model's weights at start (a cached file under the model cache)
    # instead of applying it on every decode: the stock model's speed, the scale fixed.
    lora_merge: bool = False
    # Adapters served under their own model names, chosen per request by "model" (the chat
    # route): ``NAME=PATH[:SCALE]`` strings or {name, path, scale} maps; the environment takes a
    # comma-separated list (PICE_EDGE_LORA_MODULES). Loaded at start like ``lora``.
    lora_modules: Annotated[list[LoraModule], NoDecode] = Field(default_factory=list)
    # Clients (the gateway) must send "Authorization: Bearer <api_token>"; required off
    # loopback unless ``allow_insecure``. PICE_EDGE_API_TOKEN, or a file (its first line).
    api_token: OptionalSecret = None
    api_token_file: Path | None = None
    # Serve a non-loopback host without a token (logged as a WARNING at start-up); the
    # environment may say PICE_EDGE_ALLOW_INSECURE or, as for the gateway, PICE_ALLOW_INSECURE.
    allow_insecure: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "allow_insecure", "PICE_EDGE_ALLOW_INSECURE", "PICE_ALLOW_INSECURE"
        ),
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # Log lines as text or JSON (``pice.logs``). Defaults to ``PICE_LOG_FORMAT``, the gateway's
    # variable, so one variable switches a whole ``pice up`` stack; PICE_EDGE_LOG_FORMAT wins.
    log_format: LogFormat = Field(
        default_factory=lambda: os.environ.get("PICE_LOG_FORMAT", "text"), validate_default=True
    )
    # OpenTelemetry traces (off; ``pice.tracing``): the /v1/expand job continues the gateway's.
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # Gateways to register with once the model is loaded (``edge_agent.membership``), e.g.
    # "http://gateway:8000"; several for several replicas without a shared store. The
    # environment takes a comma-separated list (PICE_EDGE_JOIN_URL). Needs ``api_token``.
    join_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The URL the gateways call this edge at; default http://<host>:<port> for a loopback
    # host. Required with ``join_url`` when the bind address says nothing (0.0.0.0).
    advertise_url: str | None = None
    # The name gateways place this edge under (unique per gateway). Default: the host name,
    # whether the edge joins or dials (``edge_name``).
    name: str | None = Field(default=None, pattern=EDGE_NAME_PATTERN)
    # Gateways to dial (the reverse channel, ``edge_agent.api.channel``): an edge behind NAT
    # opens the connection its work comes over, so it needs no inbound port. Each URL is a
    # gateway's base URL (http(s)://, or ws(s):// with the path); PICE_EDGE_DIAL_URL takes
    # several separated by commas. The edge authenticates with ``api_token``, which must be the
    # gateway's fleet token (``edge_client.token``).
    dial_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Longest wait between two dials of a gateway that is away (seconds).
    dial_backoff_max: float = Field(default=10.0, gt=0)
    # Several gateway replicas behind one name (a Kubernetes headless Service): resolve each
    # dial URL's host to all its addresses and keep one channel per address, re-resolving
    # every ``dial_resolve_seconds`` so new replicas get this edge too.
    dial_each_address: bool = False
    dial_resolve_seconds: float = Field(default=30.0, gt=0)

    @field_validator("lora_modules", mode="before")
    @classmethod
    def _parse_lora_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            return [LoraModule.parse(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("lora_modules")
    @classmethod
    def _lora_module_names_are_unique(cls, modules: list[LoraModule]) -> list[LoraModule]:
        names = [m.name for m in modules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"lora_modules names must be unique: {', '.join(repeated)}")
        return modules

    @field_validator("dial_url", mode="before")
    @classmethod
    def _split_dial_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("dial_url")
    @classmethod
    def _valid_dial_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            connect_url(url)  # raises ValueError naming the bad URL
        return urls

    def edge_name(self) -> str:
        """The name gateways place this edge under, joined or dialled: ``name``, or the host
        name (:func:`host_edge_name`)."""
        return self.name or host_edge_name(socket.gethostname())

    @model_validator(mode="after")
    def _token_from_file(self) -> EdgeSettings:
        self.api_token = secret_or_file(self.api_token, self.api_token_file)
        return self

    @field_validator("join_url", mode="before")
    @classmethod
    def _split_join_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("join_url")
    @classmethod
    def _join_urls_are_urls(cls, urls: list[str]) -> list[str]:
        return [check_edge_url(url) for url in urls]

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url_is_a_url(cls, url: str | None) -> str | None:
        return None if url is None else check_edge_url(url)

    @model_validator(mode="after")
    def _joining_needs_a_token_and_an_address(self) -> EdgeSettings:
        if not self.join_url:
            return self
        if self.api_token is None:
            raise ValueError(
                "join_url needs api_token: the gateway admits edges that present the fleet's "
                "edge token (its edge_client.token)"
            )
        if self.advertise_url is None and not is_loopback(self.host):
            raise ValueError(
                f"join_url needs advertise_url: the bind address {self.host} does not say "
                "where the gateway can reach this edge"
            )
        return self

    def advertised_url(self) -> str:
        """Where gateways reach this edge: ``advertise_url``, or the loopback address bound."""
        if self.advertise_url is not None:
            return self.advertise_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @model_validator(mode="after")
    def _dialling_needs_a_token(self) -> EdgeSettings:
        if self.dial_url and self.api_token is None:
            raise ValueError(
                "dial_url needs api_token (the gateway's edge_client.token): a gateway "
                "accepts no channel without it"
            )
        return self

    @model_validator(mode="after")
    def _merging_needs_an_adapter(self) -> EdgeSettings:
        if self.lora_merge and self.lora is None:
            raise ValueError("lora_merge needs lora (the adapter to fold into the model)")
        return self

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
