"""The router's encoder, requantised for speed: dynamic int8 matrix products on onnxruntime.

The pinned encoder file stores its weights as int8 plus a scale, but only to be small: the
graph multiplies them back to float32 (``Cast`` + ``Mul``), onnxruntime folds those constants at
load, and every matrix product then runs in float32 over ~42 MB of weights per question
(memory-bound for a 20-token question). :func:`quantize_encoder` turns it into a graph whose
matrix products really run in int8 (``onnxruntime.quantization.quantize_dynamic``: weights
int8 per output channel, activations quantised to uint8 on the fly, VNNI kernels where the CPU
has them): about half the decision time, with embeddings within cosine 0.99 of the source's.

Four steps, deterministic for one onnxruntime/onnx version:
1. fold the weights to float32 (a session at the basic optimisation level saves the folded
   graph; no fusions, so the file stays portable across CPUs);
2. add the router's fine-tuning to the folded weights (:func:`apply_lora`): ``scale * B @ A``
   per matrix, from the LoRA factors ``pice tune router-encoder`` writes;
3. optionally keep only the first N transformer blocks (:func:`keep_blocks`: a shallower,
   faster encoder, fine-tuned for it with ``pice tune router-encoder --layers N``);
4. quantise the graph dynamically, per channel (per-tensor scales lose more: cosine 0.93 at
   worst against 0.99).

:func:`split_blocks` then cuts the int8 graph into stages for the router's early exits: the
stages run one after the other give the whole graph's output bit for bit, and the router
stops after a stage whose exit head is sure (``docs/architecture.md``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pice.errors import ModelProvisioningError

if TYPE_CHECKING:
    import onnx

# The exported encoder names each linear layer's bias after its Hugging Face module
# (``inner.encoder.layer.0.attention.self.query.bias``); its weight is an anonymous initializer.
MODULE_PREFIX = "inner."
# The encoder graph's output (the last hidden state), which a cut graph keeps and
# :class:`~pice_gateway.router.encoder.SentenceEncoder` reads.
OUTPUT = "last_hidden_state"


def linear_weights(model: onnx.ModelProto) -> dict[str, str]:
    """Hugging Face module name -> the initializer holding its weight, (in, out), in a folded
    graph: each linear layer is ``MatMul(x, W)`` then ``Add`` with the named bias."""
    initializers = {i.name for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        if node.op_type != "Add":
            continue
        biases = [i for i in node.input if i in initializers and i.endswith(".bias")]
        inputs = [producers.get(i) for i in node.input if i not in initializers]
        if len(biases) != 1 or len(inputs) != 1 or inputs[0] is None:
            continue
        matmul = inputs[0]
        if matmul.op_type == "MatMul" and matmul.input[1] in initializers:
            module = biases[0].removeprefix(MODULE_PREFIX).removesuffix(".bias")
            found[module] = matmul.input[1]
    return found


def apply_lora(model: onnx.ModelProto, adapter: Path) -> int:
    """Add ``scale * B @ A`` (transposed to the graph's (in, out)) to every matrix ``adapter``
    names; returns how many. Every module must be found, with matching shapes."""
    import numpy as np
    from onnx import numpy_helper

    factors = np.load(adapter)
    scale = float(factors["scale"])
    modules = sorted(k.removesuffix(".lora_a") for k in factors.files if k.endswith(".lora_a"))
    weights = linear_weights(model)
    by_name = {i.name: i for i in model.graph.initializer}
    for module in modules:
        if module not in weights:
            raise ModelProvisioningError(f"{adapter}: the encoder has no linear layer {module}")
        tensor = by_name[weights[module]]
        weight = numpy_helper.to_array(tensor)
        delta = (factors[f"{module}.lora_b"] @ factors[f"{module}.lora_a"]).T * scale
        if delta.shape != weight.shape:
            raise ModelProvisioningError(
                f"{adapter}: {module} is {delta.shape}, the encoder's is {weight.shape}"
            )
        tensor.CopyFrom(numpy_helper.from_array((weight + delta).astype(weight.dtype), tensor.name))
    return len(modules)


def block_outputs(model: onnx.ModelProto) -> list[str]:
    """The tensor each transformer block writes, in order (the last is the encoder's output).

    A BERT graph normalises the embeddings once, then twice per block (after the attention and
    after the feed-forward layers), so block ``n``'s output is the ``2n + 1``-th
    ``LayerNormalization`` in the (topologically sorted) node list."""
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    blocks = (len(norms) - 1) // 2
    if blocks < 1 or len(norms) != 2 * blocks + 1:
        raise ModelProvisioningError(f"not a BERT-shaped encoder: {len(norms)} layer norms")
    return [norms[2 * n].output[0] for n in range(1, blocks + 1)]


def split_blocks(model: onnx.ModelProto, exits: Sequence[int]) -> list[onnx.ModelProto]:
    """The graph cut after each block in ``exits`` (1-based, increasing, before the last):
    ``len(exits) + 1`` stages. Stage 0 reads the encoder's inputs; stage ``k`` reads the
    tensor stage ``k - 1`` writes (its only output) and whichever of the encoder's inputs its
    nodes use (the attention mask); the last stage writes :data:`OUTPUT`."""
    from onnx.shape_inference import infer_shapes
    from onnx.utils import Extractor

    outputs = block_outputs(model)
    if list(exits) != sorted(set(exits)) or any(not 1 <= b < len(outputs) for b in exits):
        raise ModelProvisioningError(
            f"exits must be increasing blocks between 1 and {len(outputs) - 1}, not {exits}"
        )
    if outputs[-1] != OUTPUT:
        raise ModelProvisioningError(f"the encoder's last block does not write {OUTPUT}")
    originals = [i.name for i in model.graph.input]
    # The extractor types a cut tensor from the graph's value infos: make sure there are some.
    extractor = Extractor(infer_shapes(model))
    stages, previous = [], None
    for output in [outputs[b - 1] for b in exits] + [OUTPUT]:
        inputs = originals if previous is None else [previous, *originals]
        stage = extractor.extract_model(inputs, [output])
        used = {name for node in stage.graph.node for name in node.input}
        # Extract again with only the inputs the stage reads: a session wants every
        # declared input fed, and the later stages do not read the token ids.
        stages.append(extractor.extract_model([i for i in inputs if i in used], [output]))
        previous = output
    return stages


def keep_blocks(model: onnx.ModelProto, layers: int) -> onnx.ModelProto:
    """The graph up to the output of transformer block ``layers`` (1-based), as its
    ``last_hidden_state``: a shallower encoder from the same weights (``model`` is changed).

    A BERT graph normalises the embeddings once, then twice per block (after the attention and
    after the feed-forward layers), so block ``n``'s output is the ``2n + 1``-th
    ``LayerNormalization`` in the (topologically sorted) node list. The nodes and weights only
    later blocks use are dropped."""
    graph = model.graph
    outputs = block_outputs(model)
    if not 1 <= layers <= len(outputs):
        raise ModelProvisioningError(
            f"cannot keep {layers} blocks of an encoder with {len(outputs)} blocks"
        )
    if layers == len(outputs):
        return model
    cut = next(n for n in graph.node if outputs[layers - 1] in n.output)
    # The cut tensor takes the output's name; the old output's producer goes with the rest.
    cut.output[0] = OUTPUT
    needed, kept = {OUTPUT}, []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output) and (node is cut or OUTPUT not in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
    infos = [v for v in graph.value_info if v.name in needed and v.name != OUTPUT]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return model


def quantize_encoder(
    source: Path, target: Path, adapter: Path | None = None, *, layers: int | None = None
) -> None:
    """Write the dynamic-int8 version of the ONNX encoder ``source`` to ``target``, with the
    LoRA ``adapter`` (an ``.npz`` of factors) added to its weights first when given, and only
    its first ``layers`` transformer blocks when given."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="pice-router-") as scratch:
        folded = Path(scratch) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        if adapter is not None or layers is not None:
            model = onnx.load(folded)
            if adapter is not None:
                apply_lora(model, adapter)
            if layers is not None:
                model = keep_blocks(model, layers)
            onnx.save(model, folded)
        # reduce_range: 7-bit weights, so no CPU saturates. Without it, AVX2's u8 x s8 kernel
        # (no VNNI) saturates 16-bit sums that AVX-512 VNNI does not, and the same question
        # would embed differently on the two kinds of machine this project runs on.
        quantize_dynamic(
            folded, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        )
