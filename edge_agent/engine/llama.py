"""A thin typed layer over llama-cpp-python's low-level (ctypes) API.

The high-level ``llama_cpp.Llama`` cannot be used: it does not pass ``n_seq_max`` through and
decodes one sequence at a time. Here one model and one context with a *unified* KV cache are
built by hand, so one prompt token can belong to many sequences (a shared prefix is prefilled
once). Every method except the vocabulary ones must be called from the engine thread; the
vocabulary is read-only after loading, so tokenising on other threads is safe.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from edge_agent.engine.cpu import KernelChoice, choose_kernels
from edge_agent.engine.lora_merge import check_adapter
from pice.errors import ModelProvisioningError

logger = logging.getLogger(__name__)

# Decode status codes of llama_decode (llama.h).
DECODE_OK = 0
DECODE_NO_KV_SLOT = 1


@dataclass(frozen=True)
class ContextConfig:
    n_ctx: int
    n_batch: int
    n_seq_max: int
    n_threads: int


def system_info() -> str:
    """llama.cpp's one-line report of the CPU features its build uses."""
    info: bytes = llama_cpp.llama_print_system_info()
    return info.decode(errors="replace").strip()


def _quiet_llama_logs() -> None:
    """Send llama.cpp's chatter to stderr only when this process logs at DEBUG."""
    from llama_cpp import _logger

    _logger.set_verbose(logging.getLogger("edge_agent").isEnabledFor(logging.DEBUG))


class LlamaModel:
    """A loaded GGUF model and its vocabulary.

    ``allow_amx``: use llama.cpp's AMX weight buffers if the build has them (see
    :mod:`edge_agent.engine.cpu`; off by default because they crash). ``extra_buffers=False``
    turns every extra weight buffer (AMX and the CPU repack) off, for measuring what they give.
    ``n_gpu_layers``: layers whose weights go to the GPU in a CUDA (or other GPU) build of
    llama.cpp, -1 for all; 0 keeps the model on the CPU. llama.cpp's own default is "all", so
    it is always set: a GPU build then offloads only when asked (a Jetson Orin: -1).
    """

    def __init__(
        self,
        path: Path,
        *,
        allow_amx: bool = False,
        extra_buffers: bool = True,
        n_gpu_layers: int = 0,
    ) -> None:
        if not path.is_file():
            raise ModelProvisioningError(f"Model file not found: {path}")
        _quiet_llama_logs()
        llama_cpp.llama_backend_init()
        self.kernels: KernelChoice = choose_kernels(system_info(), allow_amx=allow_amx)
        if not self.kernels.use_extra_buffers:
            logger.warning("%s", self.kernels.reason)
        params = llama_cpp.llama_model_default_params()
        # Whether this model's weights may sit in llama.cpp's extra (repacked/AMX) buffers.
        self.extra_buffers: bool = self.kernels.use_extra_buffers and extra_buffers
        params.use_extra_bufts = self.extra_buffers
        # Negative means every layer (llama.h); a CPU-only build ignores it.
        params.n_gpu_layers = n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ModelProvisioningError(f"llama.cpp could not load {path}")
        self.ptr: Any = model
        self.path = path
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode()
        capacity = len(data) + 16
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), buf, capacity, add_special, parse_special
        )
        if n < 0:  # the buffer was too small; -n is the size needed
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, capacity, add_special, parse_special
            )
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        """A special token's own text (``<|im_end|>``), for chat templates."""
        buf = ctypes.create_string_buffer(128)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode(errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def bos(self) -> int:
        return int(llama_cpp.llama_vocab_bos(self.vocab))

    def eos(self) -> int:
        return int(llama_cpp.llama_vocab_eos(self.vocab))

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None when the key is absent."""
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
        if n < 0:
            return None
        if n >= size:  # a long chat template: ask again with room for all of it
            buf = ctypes.create_string_buffer(n + 1)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, n + 1)
        return buf.value.decode(errors="replace")

    def load_adapter(self, path: Path) -> LoraAdapter:
        """Load a llama.cpp LoRA adapter GGUF made for this model (freed with the model)."""
        if not path.is_file():
            raise ModelProvisioningError(f"LoRA adapter not found: {path}")
        check_adapter(path)
        adapter = llama_cpp.llama_adapter_lora_init(self.ptr, str(path).encode())
        if not adapter:
            # llama.cpp logs why (wrong base model, wrong shapes) at error level.
            raise ModelProvisioningError(f"llama.cpp could not load the LoRA adapter {path}")
        return LoraAdapter(adapter, path)

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None


@dataclass(frozen=True)
class LoraAdapter:
    """A loaded adapter; llama.cpp frees it together with its model."""

    ptr: Any
    path: Path

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1024)
        n = llama_cpp.llama_adapter_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode(errors="replace")


class TokenBatch:
    """A reusable ``llama_batch`` that tokens are appended to, each with its sequence ids."""

    def __init__(self, capacity: int, n_seq_max: int) -> None:
        self.capacity = capacity
        self.n_seq_max = n_seq_max
        self.raw: Any = llama_cpp.llama_batch_init(capacity, 0, n_seq_max)
        self.n_tokens = 0

    def clear(self) -> None:
        self.n_tokens = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq_ids: tuple[int, ...], *, logits: bool) -> int:
        """Append one token; returns its index in the batch (the logits row when ``logits``)."""
        i = self.n_tokens
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = len(seq_ids)
        row = raw.seq_id[i]
        for j, seq in enumerate(seq_ids):
            row[j] = seq
        raw.logits[i] = 1 if logits else 0
        self.n_tokens = i + 1
        raw.n_tokens = self.n_tokens
        return i

    def close(self) -> None:
        if self.raw is not None:
            llama_cpp.llama_batch_free(self.raw)
            self.raw = None


class LlamaContext:
    """A decoding context with a unified KV cache shared by up to ``n_seq_max`` sequences."""

    def __init__(self, model: LlamaModel, config: ContextConfig) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = config.n_seq_max
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads
        # One cache for every sequence, so a prefix cell can belong to several sequences and
        # a sequence may use as much of the context as is free.
        params.kv_unified = True
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise ModelProvisioningError(f"llama.cpp could not create a context for {model.path}")
        self.ptr: Any = ctx
        self.model = model
        self.n_ctx: int = llama_cpp.llama_n_ctx(ctx)
        self.n_seq_max: int = llama_cpp.llama_n_seq_max(ctx)
        self.memory: Any = llama_cpp.llama_get_memory(ctx)
        # Adapters under every decode (``--lora``), the named ones a decode may add
        # (``--lora-module``), and which named one is selected now (None: none).
        self._always: list[tuple[LoraAdapter, float]] = []
        self._named: dict[str, tuple[LoraAdapter, float]] = {}
        self._selected: str | None = None

    def set_adapter(self, adapter: LoraAdapter, scale: float) -> None:
        """Apply ``adapter`` at ``scale`` to every later decode of this context."""
        self._always.append((adapter, scale))
        self._apply(self._selected)

    def add_named_adapter(self, name: str, adapter: LoraAdapter, scale: float) -> None:
        """Make ``adapter`` selectable as ``name`` (:meth:`use_adapter`)."""
        self._named[name] = (adapter, scale)

    def use_adapter(self, name: str | None) -> None:
        """Decode from now on with the named adapter added to the context-wide ones (None: the
        context-wide ones only). Nothing happens when ``name`` is already selected, so a batcher
        may call this before every decode."""
        if name != self._selected:
            self._apply(name)

    def _apply(self, name: str | None) -> None:
        chosen = [*self._always, *([self._named[name]] if name is not None else [])]
        n = len(chosen)
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*(a.ptr for a, _ in chosen))
        scales = (ctypes.c_float * n)(*(scale for _, scale in chosen))
        # llama.cpp replaces the context's whole adapter set (n = 0 clears it).
        if llama_cpp.llama_set_adapters_lora(self.ptr, adapters, n, scales) != 0:
            paths = ", ".join(str(a.path) for a, _ in chosen)
            raise ModelProvisioningError(f"llama.cpp could not apply the adapters {paths}")
        self._selected = name

    def decode(self, batch: TokenBatch) -> int:
        """Run the model over ``batch``. 0 = ok, 1 = no KV slot (nothing changed), <0 = error."""
        return int(llama_cpp.llama_decode(self.ptr, batch.raw))

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        """The raw logits of batch row ``index`` as a zero-copy view (valid until next decode)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ptr, index)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    def share_cells(self, source: int, target: int, count: int) -> None:
        """Tag the cells of ``source``'s first ``count`` positions with ``target`` as well.

        On a unified cache this copies nothing: the cells simply belong to both sequences.
        """
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, 0, count)

    def drop_sequence(self, seq: int) -> None:
        """Free every KV cell of ``seq`` (cells shared with other sequences stay theirs)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_free(self.ptr)
            self.ptr = None
