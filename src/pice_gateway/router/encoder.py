"""Sentence embeddings for the router: all-MiniLM-L6-v2 (dynamic int8 ONNX) on onnxruntime.

Mean pooling over the last hidden state, then L2 normalisation: what sentence-transformers
does for this model. One intra-op thread: a question is ~10–60 tokens, too little work to
share, and the gateway's event loop and other requests need the rest of the CPU. onnxruntime
releases the GIL while it runs, so :meth:`SentenceEncoder.embed` is called in a worker thread.

One text per call and no padding: the attention mask is all ones, so mean pooling is a plain
mean over the tokens, and the session never computes padding (the tokenizer file itself pads
to 128 tokens, which would cost 5–7x on a typical 15–30-token question).

With the graph cut into stages (``EncoderFiles.stages``, for the router's early exits),
:meth:`SentenceEncoder.embed_stages` yields the pooled embedding after each stage and runs the
next only when asked for it; the last is what :meth:`SentenceEncoder.embed` returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from pice.errors import ModelProvisioningError
from pice_gateway.router.assets import EncoderFiles
from pice_gateway.router.quantize import OUTPUT

# The model was trained on 128-token inputs (max 512): the router reads at most this many.
MAX_TOKENS = 128

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Tokenizer


class Encoder(Protocol):
    """Text in, L2-normalised embeddings out (the router's only need of a model)."""

    def embed(self, text: str) -> npt.NDArray[np.float32]: ...

    def embed_stages(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        """The embedding after each stage of the encoder, computed as they are asked for;
        the last is :meth:`embed`'s."""
        ...


def session_options(threads: int = 1) -> ort.SessionOptions:
    """One question's worth of work: no thread pool, operators in order, every graph fusion."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def configure_tokenizer(tokenizer: Tokenizer, max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """No padding; a long text keeps its last ``max_tokens`` (where the question usually is)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens, direction="left")
    return tokenizer


def mean_pooled(hidden: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One sequence's hidden states (1, tokens, width) -> their L2-normalised mean."""
    pooled = hidden[0].mean(axis=0)
    norm = float(np.linalg.norm(pooled)) or 1.0
    embedding: npt.NDArray[np.float32] = (pooled / norm).astype(np.float32, copy=False)
    return embedding


class SentenceEncoder:
    def __init__(self, files: EncoderFiles, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        graphs = files.stages or (files.onnx,)
        self._sessions = [
            ort.InferenceSession(
                str(graph), session_options(threads), providers=["CPUExecutionProvider"]
            )
            for graph in graphs
        ]
        # Each stage's inputs, and the one tensor it writes (the next stage's first input).
        self._inputs = [[i.name for i in s.get_inputs()] for s in self._sessions]
        self._outputs = [s.get_outputs()[0].name for s in self._sessions]
        if self._outputs[-1] != OUTPUT:
            raise ModelProvisioningError(f"{graphs[-1]} does not write {OUTPUT}")
        self._tokenizer = configure_tokenizer(Tokenizer.from_file(str(files.tokenizer)))

    @property
    def stages(self) -> int:
        return len(self._sessions)

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """The L2-normalised mean-pooled embedding of ``text`` (384 floats)."""
        *_, last = self.embed_stages(text)
        return last

    def embed_stages(self, text: str) -> Iterator[npt.NDArray[np.float32]]:
        ids = np.asarray([self._tokenizer.encode(text or " ").ids], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        for session, inputs, output in zip(
            self._sessions, self._inputs, self._outputs, strict=True
        ):
            (hidden,) = session.run([output], {name: feeds[name] for name in inputs})
            feeds[output] = hidden
            yield mean_pooled(hidden)
