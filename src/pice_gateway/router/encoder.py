"""Sentence embeddings for the router: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

Mean pooling over the last hidden state, then L2 normalisation: what sentence-transformers
does for this model. One intra-op thread: a question is ~10–60 tokens, too little work to
share, and the gateway's event loop and other requests need the rest of the CPU. onnxruntime
releases the GIL while it runs, so :meth:`SentenceEncoder.embed` is called in a worker thread.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from pice_gateway.router.assets import EncoderFiles

# The model was trained on 128-token inputs (max 512): the router reads at most this many.
MAX_TOKENS = 128


class Encoder(Protocol):
    """Text in, an L2-normalised embedding out (the router's only need of a model)."""

    def embed(self, text: str) -> npt.NDArray[np.float32]: ...


class SentenceEncoder:
    def __init__(self, files: EncoderFiles, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(files.onnx), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(files.tokenizer))
        tokenizer.no_padding()
        # Keep the end of a long text: that is where the question usually is.
        tokenizer.enable_truncation(MAX_TOKENS, direction="left")
        self._tokenizer = tokenizer

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """The L2-normalised mean-pooled embedding of ``text`` (384 floats)."""
        encoding = self._tokenizer.encode(text or " ")
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(
            ["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._inputs}
        )
        weights = mask[0, :, None].astype(np.float32)
        pooled = (hidden[0] * weights).sum(axis=0) / max(float(weights.sum()), 1.0)
        norm = float(np.linalg.norm(pooled)) or 1.0
        embedding: npt.NDArray[np.float32] = (pooled / norm).astype(np.float32)
        return embedding
