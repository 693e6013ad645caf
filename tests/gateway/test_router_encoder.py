"""The encoder's plumbing without the real model: session options, tokenizer, the int8 derivation.

The quantiser runs for real on a tiny graph shaped like the pinned encoder's weights (int8
storage, multiplied back to float32 by ``Cast`` + ``Mul`` before a ``MatMul``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing

from pice.errors import ModelProvisioningError
from pice.models.assets import WheelAsset
from pice.models.provision import read_marker
from pice_gateway.router import assets
from pice_gateway.router.encoder import configure_tokenizer, session_options
from pice_gateway.router.quantize import keep_blocks, linear_weights, quantize_encoder, split_blocks


def test_session_options_run_one_question_on_one_thread_with_every_fusion() -> None:
    options = session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options(threads=2).intra_op_num_threads == 2


def word_tokenizer() -> Tokenizer:
    words = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "context", "so", "how", "do", "i", "sleep"]
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    # Like the shipped tokenizer.json: it pads every text to a fixed length.
    tokenizer.enable_padding(length=32, pad_id=3, pad_token="[PAD]")
    return tokenizer


def test_the_tokenizer_keeps_the_end_of_a_long_text_and_does_not_pad() -> None:
    tokenizer = configure_tokenizer(word_tokenizer(), max_tokens=6)
    long = tokenizer.encode("context " * 40 + "so how do i sleep")
    assert long.tokens == ["[CLS]", "how", "do", "i", "sleep", "[SEP]"]
    short = tokenizer.encode("how do i sleep")
    assert short.tokens == ["[CLS]", "how", "do", "i", "sleep", "[SEP]"]
    assert configure_tokenizer(word_tokenizer()).encode("sleep").tokens == [
        "[CLS]",
        "sleep",
        "[SEP]",
    ]


def int8_linear(
    path: Path, n_in: int, n_out: int, *, bias: str | None = None, seed: int = 0
) -> np.ndarray:
    """``Y = X @ (W_int8 * 0.01)`` (``+ b``, the initializer named ``bias``, when given): the
    pinned encoder's weight pattern. Without a bias the input is (n, n_in); with one it is
    (batch, tokens, n_in) like the encoder's hidden states (a 2-D input would be fused into
    one ``Gemm``). Returns the folded float32 weight."""
    weight = np.random.default_rng(seed).integers(-127, 128, size=(n_in, n_out), dtype=np.int8)
    dims: list[str | int] = ["n", "t"] if bias else ["n"]
    nodes = [
        helper.make_node("Cast", ["w_int8"], ["w_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w_float", "scale"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["xw" if bias else "y"]),
    ]
    initializers = [
        numpy_helper.from_array(weight, "w_int8"),
        numpy_helper.from_array(np.array(0.01, dtype=np.float32), "scale"),
    ]
    if bias:
        nodes.append(helper.make_node("Add", ["xw", bias], ["y"]))
        initializers.append(numpy_helper.from_array(np.full(n_out, 0.1, dtype=np.float32), bias))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*dims, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*dims, n_out])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return weight.astype(np.float32) * np.float32(0.01)


def tiny_encoder(path: Path) -> None:
    """64 -> 32, no bias."""
    int8_linear(path, 64, 32)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return np.asarray(y)


def test_quantize_encoder_makes_the_matrix_products_int8_and_stays_close(tmp_path: Path) -> None:
    source, target = tmp_path / "source.onnx", tmp_path / "target.onnx"
    tiny_encoder(source)
    quantize_encoder(source, target)
    nodes = onnx.load(target).graph.node
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {node.op_type for node in nodes}
    # The weights were folded to float32 before quantising: nothing reads the int8 original.
    assert all("w_int8" not in node.input for node in nodes)
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    exact, quantised = run(source, x), run(target, x)
    cosine = np.sum(exact * quantised, axis=1) / (
        np.linalg.norm(exact, axis=1) * np.linalg.norm(quantised, axis=1)
    )
    assert float(cosine.min()) > 0.99
    # Deterministic: the same source gives the same bytes.
    again = tmp_path / "again.onnx"
    quantize_encoder(source, again)
    assert again.read_bytes() == target.read_bytes()


def test_the_quantised_encoder_is_derived_once_per_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.onnx"
    tiny_encoder(source)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")

    def fake_provision_asset(asset: WheelAsset, cache: Path, *, pull: bool = True) -> Path:
        return source if asset is assets.ENCODER_ONNX else tokenizer

    made: list[Path] = []

    def counting_quantize(src: Path, dst: Path, adapter: Path | None = None) -> None:
        assert adapter == assets.ENCODER_LORA  # the shipped fine-tuning goes in
        made.append(dst)
        quantize_encoder(src, dst)

    monkeypatch.setattr(assets, "provision_asset", fake_provision_asset)
    monkeypatch.setattr(assets, "quantize_encoder", counting_quantize)
    monkeypatch.setattr(assets, "quantize_recipe", lambda: "recipe A")
    cache = tmp_path / "cache"

    files = assets.provision_encoder(cache, pull=False)
    assert files.onnx == cache / "assets" / assets.QUANTIZED_FILE
    assert files.tokenizer == tokenizer
    assert len(made) == 1
    marker = read_marker(files.onnx)
    assert marker is not None
    assert marker.recipe == "recipe A"
    assert not list((cache / "assets").glob("*.partial"))

    assert assets.provision_encoder(cache, pull=False).onnx == files.onnx
    assert len(made) == 1  # marked for this recipe: used as it is

    monkeypatch.setattr(assets, "quantize_recipe", lambda: "recipe B")
    assets.provision_encoder(cache, pull=False)
    assert len(made) == 2  # another onnxruntime or source: made again


def test_a_failed_derivation_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_quantize(src: Path, dst: Path, adapter: Path | None = None) -> None:
        dst.write_bytes(b"half a model")
        raise RuntimeError("quantiser failed")

    monkeypatch.setattr(assets, "provision_asset", lambda asset, cache, pull=True: tmp_path)
    monkeypatch.setattr(assets, "quantize_encoder", broken_quantize)
    with pytest.raises(RuntimeError):
        assets.provision_encoder(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "assets").glob("*"))


QUERY = "encoder.layer.0.attention.self.query"


def tiny_linear(path: Path) -> np.ndarray:
    """16 -> 8 with the bias named as the exported encoder names it (``inner.<module>.bias``)."""
    return int8_linear(path, 16, 8, bias=f"inner.{QUERY}.bias", seed=2)


def lora(path: Path, module: str, out: int = 8, inp: int = 16, scale: float = 2.0) -> np.ndarray:
    """LoRA factors as the tuning step writes them (torch's (out, in) layout); returns the
    delta in the graph's (in, out) layout."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, inp)).astype(np.float32) * 0.5
    b = rng.standard_normal((out, 4)).astype(np.float32) * 0.5
    np.savez(path, scale=np.asarray(scale, dtype=np.float32), **{
        f"{module}.lora_a": a, f"{module}.lora_b": b
    })  # fmt: skip
    return np.asarray((b @ a).T * scale)


def test_the_lora_is_added_to_the_named_linear_layer_before_quantising(tmp_path: Path) -> None:
    source, adapter = tmp_path / "source.onnx", tmp_path / "lora.npz"
    weight = tiny_linear(source)
    delta = lora(adapter, QUERY)
    plain, tuned = tmp_path / "plain.onnx", tmp_path / "tuned.onnx"
    quantize_encoder(source, plain)
    quantize_encoder(source, tuned, adapter)
    x = np.random.default_rng(4).standard_normal((1, 6, 16)).astype(np.float32)
    expected = (x @ (weight + delta) + np.float32(0.1))[0]

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.reshape(-1, 8), b.reshape(-1, 8)
        per_row = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        return float(np.min(per_row))

    assert cosine(run(tuned, x), expected) > 0.99
    # The delta is not small against the weight: without it the output is elsewhere.
    assert cosine(run(plain, x), expected) < 0.9
    assert {"MatMulInteger"} <= {node.op_type for node in onnx.load(tuned).graph.node}


def test_the_linear_layers_are_found_by_their_bias_names(tmp_path: Path) -> None:
    source = tmp_path / "source.onnx"
    tiny_linear(source)
    # Unfolded, the weight is a Mul's output, not an initializer: nothing to adapt in place.
    assert linear_weights(onnx.load(source)) == {}
    folded = tmp_path / "folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    (found,) = linear_weights(onnx.load(folded)).items()
    assert found[0] == QUERY


def test_a_lora_that_does_not_fit_the_encoder_is_refused(tmp_path: Path) -> None:
    source, adapter = tmp_path / "source.onnx", tmp_path / "lora.npz"
    tiny_linear(source)
    lora(adapter, "encoder.layer.9.attention.self.query")
    with pytest.raises(ModelProvisioningError, match="no linear layer"):
        quantize_encoder(source, tmp_path / "out.onnx", adapter)
    lora(adapter, QUERY, out=4)
    with pytest.raises(ModelProvisioningError, match="the encoder's is"):
        quantize_encoder(source, tmp_path / "out.onnx", adapter)


def blocks_graph(path: Path, blocks: int, *, extra_norm: bool = False) -> None:
    """A BERT-shaped toy: the embedding's layer norm, then per block a MatMul and a layer norm
    twice (attention, feed-forward), the last norm's output named ``last_hidden_state``."""
    rng = np.random.default_rng(5)
    nodes, initializers = (
        [],
        [
            numpy_helper.from_array(np.ones(8, dtype=np.float32), "gamma"),
            numpy_helper.from_array(np.zeros(8, dtype=np.float32), "beta"),
        ],
    )
    norms = 2 * blocks + 1 + (1 if extra_norm else 0)
    previous = "x"
    for i in range(norms):
        if i:
            weight = f"w{i}"
            initializers.append(
                numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), weight)
            )
            nodes.append(helper.make_node("MatMul", [previous, weight], [f"m{i}"]))
            previous = f"m{i}"
        out = "last_hidden_state" if i == norms - 1 else f"norm{i}"
        nodes.append(
            helper.make_node("LayerNormalization", [previous, "gamma", "beta"], [out], axis=-1)
        )
        previous = out
    graph = helper.make_graph(
        nodes,
        "blocks",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["t", 8])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["t", 8])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)


def hidden(model: onnx.ModelProto, x: np.ndarray, output: str = "last_hidden_state") -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run([output], {"x": x})
    return np.asarray(y)


def test_keeping_n_blocks_cuts_the_graph_after_block_n_under_the_output_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "blocks.onnx"
    blocks_graph(path, 3)
    model = onnx.load(path)
    x = np.random.default_rng(6).standard_normal((4, 8)).astype(np.float32)
    # Block n's output is the (2n + 1)-th layer norm's: norm2 after block 1, norm4 after 2.
    for layers, tensor in ((1, "norm2"), (2, "norm4")):
        model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
        expected = hidden(model, x, tensor)
        del model.graph.output[-1]
        cut = keep_blocks(onnx.load(path), layers)
        norms = [n for n in cut.graph.node if n.op_type == "LayerNormalization"]
        assert len(norms) == 2 * layers + 1
        assert [o.name for o in cut.graph.output] == ["last_hidden_state"]
        np.testing.assert_allclose(hidden(cut, x), expected, rtol=1e-6)
    # All blocks: the graph as it is.
    whole = keep_blocks(onnx.load(path), 3)
    np.testing.assert_array_equal(hidden(whole, x), hidden(onnx.load(path), x))


@pytest.mark.parametrize("layers", [0, 4])
def test_keeping_more_blocks_than_there_are_or_none_is_refused(tmp_path: Path, layers: int) -> None:
    path = tmp_path / "blocks.onnx"
    blocks_graph(path, 3)
    with pytest.raises(ModelProvisioningError, match=f"cannot keep {layers} blocks"):
        keep_blocks(onnx.load(path), layers)


def test_a_graph_whose_layer_norms_are_not_bert_shaped_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "odd.onnx"
    blocks_graph(path, 2, extra_norm=True)  # 6 layer norms: not 2n + 1
    with pytest.raises(ModelProvisioningError, match="6 layer norms"):
        keep_blocks(onnx.load(path), 1)


def run_stages(stages: list[onnx.ModelProto], x: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """Each stage fed what it declares (the encoder's input or the tensor before it), as
    :class:`~pice_gateway.router.encoder.SentenceEncoder` feeds them: the last output and each
    stage's inputs."""
    feeds, inputs = {"x": x}, []
    for stage in stages:
        graph = stage.SerializeToString()
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        inputs.append(names)
        (y,) = session.run(None, {name: feeds[name] for name in names})
        feeds[session.get_outputs()[0].name] = y
    return np.asarray(y), inputs


def test_the_graph_cut_at_exit_blocks_composes_to_the_whole_graph(tmp_path: Path) -> None:
    path = tmp_path / "blocks.onnx"
    blocks_graph(path, 3)
    x = np.random.default_rng(7).standard_normal((5, 8)).astype(np.float32)
    stages = split_blocks(onnx.load(path), [1, 2])
    assert [[o.name for o in s.graph.output] for s in stages] == [
        ["norm2"], ["norm4"], ["last_hidden_state"]
    ]  # fmt: skip
    # Each stage holds its own blocks only (the embedding's norm + 2 per block).
    assert [sum(n.op_type == "LayerNormalization" for n in s.graph.node) for s in stages] == [
        3, 2, 2
    ]  # fmt: skip
    composed, inputs = run_stages(stages, x)
    assert inputs == [["x"], ["norm2"], ["norm4"]]
    np.testing.assert_array_equal(composed, hidden(onnx.load(path), x))
    # No exits: one stage, the whole graph.
    (whole,) = split_blocks(onnx.load(path), [])
    np.testing.assert_array_equal(run_stages([whole], x)[0], hidden(onnx.load(path), x))


@pytest.mark.parametrize("exits", [[0], [3], [2, 1], [1, 1]])
def test_exits_outside_the_encoder_or_out_of_order_are_refused(
    tmp_path: Path, exits: list[int]
) -> None:
    path = tmp_path / "blocks.onnx"
    blocks_graph(path, 3)
    with pytest.raises(ModelProvisioningError, match="exits must be increasing blocks"):
        split_blocks(onnx.load(path), exits)


def test_a_graph_that_is_not_bert_shaped_is_not_split(tmp_path: Path) -> None:
    path = tmp_path / "odd.onnx"
    blocks_graph(path, 2, extra_norm=True)
    with pytest.raises(ModelProvisioningError, match="not a BERT-shaped encoder"):
        split_blocks(onnx.load(path), [1])
