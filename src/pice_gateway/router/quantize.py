"""The router's encoder, requantised for speed: dynamic int8 matrix products on onnxruntime.

The pinned encoder file stores its weights as int8 plus a scale, but only to be small: the
graph multiplies them back to float32 (``Cast`` + ``Mul``), onnxruntime folds those constants at
load, and every matrix product then runs in float32 over ~42 MB of weights per question
(memory-bound for a 20-token question). :func:`quantize_encoder` turns it into a graph whose
matrix products really run in int8 (``onnxruntime.quantization.quantize_dynamic``: weights
int8 per output channel, activations quantised to uint8 on the fly, VNNI kernels where the CPU
has them): about half the decision time, with embeddings within cosine 0.99 of the source's.

Two steps, both onnxruntime's own and deterministic for one onnxruntime/onnx version:
1. fold the weights to float32 (a session at the basic optimisation level saves the folded
   graph; no fusions, so the file stays portable across CPUs);
2. quantise the folded graph dynamically, per channel (per-tensor scales lose more: cosine
   0.93 at worst against 0.99).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def quantize_encoder(source: Path, target: Path) -> None:
    """Write the dynamic-int8 version of the ONNX encoder ``source`` to ``target``."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="pice-router-") as scratch:
        folded = Path(scratch) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        # reduce_range: 7-bit weights, so no CPU saturates. Without it, AVX2's u8 x s8 kernel
        # (no VNNI) saturates 16-bit sums that AVX-512 VNNI does not, and the same question
        # would embed differently on the two kinds of machine this project runs on.
        quantize_dynamic(
            folded, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        )
