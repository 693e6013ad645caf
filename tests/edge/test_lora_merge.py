"""``pice edge serve --lora-merge``: the adapter folded into the model's weights at start."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.api.app import adapter_info, engine_config
from edge_agent.engine import lora_merge
from edge_agent.engine.lora_merge import merge_lora, merged_model
from edge_agent.settings import EdgeSettings
from pice.errors import ModelProvisioningError
from pice.models.merged import merged_dir, merged_files
from pice.models.provision import marker_path
from tests.support.gguf_files import write_lora, write_model

Q = gguf.GGMLQuantizationType
ARCH = "qwen2"


def toy_model(tmp_path: Path, kind: gguf.GGMLQuantizationType = Q.Q8_0) -> Path:
    rng = np.random.default_rng(1)
    return write_model(
        tmp_path / "model.gguf",
        ARCH,
        [
            ("blk.0.attn_q.weight", rng.standard_normal((32, 64)) * 0.1, kind),
            ("blk.0.attn_v.weight", rng.standard_normal((32, 64)) * 0.1, Q.Q8_0),
            ("blk.0.attn_norm.weight", rng.standard_normal(64), Q.F32),
        ],
    )


def tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def test_the_sum_is_what_llama_cpp_adds_requantised_and_the_rest_is_copied(
    tmp_path: Path,
) -> None:
    base = toy_model(tmp_path)
    adapter = write_lora(
        tmp_path / "a.gguf", ARCH, {"blk.0.attn_q.weight": (32, 64)}, rank=4, alpha=8.0
    )
    report = merge_lora(base, adapter, tmp_path / "merged.gguf", scale=0.5)
    assert (report.merged_weights, report.rank, report.alpha) == (1, 4, 8.0)

    before, after = tensors(base), tensors(report.path)
    assert list(after) == list(before)
    lora = tensors(adapter)
    a = np.asarray(lora["blk.0.attn_q.weight.lora_a"].data)
    b = np.asarray(lora["blk.0.attn_q.weight.lora_b"].data)
    weight = gguf.quants.dequantize(before["blk.0.attn_q.weight"].data, Q.Q8_0)
    merged = gguf.quants.dequantize(after["blk.0.attn_q.weight"].data, Q.Q8_0)
    expected = weight + 0.5 * 8.0 / 4 * (b @ a)  # scale * alpha / rank, as llama.cpp
    step = np.abs(expected).max() / 127  # one Q8_0 step at most
    assert np.abs(merged - expected).max() <= step
    assert np.abs(merged - weight).max() > 10 * step  # the adapter did move the weight
    assert report.largest_change == pytest.approx(np.abs(expected - weight).max(), rel=1e-4)
    assert after["blk.0.attn_q.weight"].tensor_type == Q.Q8_0
    for name in ("blk.0.attn_v.weight", "blk.0.attn_norm.weight"):  # untouched, byte for byte
        assert bytes(after[name].data) == bytes(before[name].data)
    fields = gguf.GGUFReader(str(report.path)).fields
    assert fields["test.marker"].contents() == "kept"
    assert fields["general.architecture"].contents() == ARCH


def test_the_merged_file_is_cached_by_its_inputs(tmp_path: Path) -> None:
    base = toy_model(tmp_path)
    adapter = write_lora(tmp_path / "a.gguf", ARCH, {"blk.0.attn_v.weight": (32, 64)})
    first = merged_model(base, adapter, 1.0, merged_dir(tmp_path))
    os.utime(marker_path(first.path), (1.0, 1.0))  # last used long ago
    again = merged_model(base, adapter, 1.0, merged_dir(tmp_path))
    assert (first.cached, again.cached) == (False, True)
    assert [f.last_used > 1.0 for f in merged_files(tmp_path)] == [True], "a use is recorded"
    assert again.path == first.path
    other = merged_model(base, adapter, 0.5, merged_dir(tmp_path))
    assert other.path != first.path
    assert not other.cached
    assert not list((merged_dir(tmp_path)).glob("*.tmp"))


def test_agents_started_together_merge_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = toy_model(tmp_path)
    adapter = write_lora(tmp_path / "a.gguf", ARCH, {"blk.0.attn_v.weight": (32, 64)})
    merges: list[Path] = []

    def slow_merge(*args: Any) -> lora_merge.MergeReport:
        merges.append(args[2])
        time.sleep(0.2)  # long enough for the other caller to arrive mid-merge
        return merge_lora(*args)

    monkeypatch.setattr(lora_merge, "merge_lora", slow_merge)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: merged_model(base, adapter, 1.0, tmp_path / "c"), "ab"))
    assert len(merges) == 1
    assert sorted(r.cached for r in reports) == [False, True]
    assert reports[0].path == reports[1].path


@pytest.mark.parametrize(
    ("shapes", "arch", "message"),
    [
        ({"blk.9.attn_q.weight": (32, 64)}, ARCH, "not a weight of the model"),
        ({"blk.0.attn_q.weight": (32, 16)}, ARCH, "do not fit"),
        ({"blk.0.attn_q.weight": (32, 64)}, "llama", "architecture"),
    ],
)
def test_an_adapter_for_another_model_is_refused(
    tmp_path: Path, shapes: dict[str, tuple[int, int]], arch: str, message: str
) -> None:
    base = toy_model(tmp_path)
    adapter = write_lora(tmp_path / "a.gguf", arch, shapes)
    with pytest.raises(ModelProvisioningError, match=message):
        merge_lora(base, adapter, tmp_path / "merged.gguf")
    assert not list(tmp_path.glob("merged.gguf*"))


def test_a_model_file_is_not_an_adapter(tmp_path: Path) -> None:
    base = toy_model(tmp_path)
    with pytest.raises(ModelProvisioningError, match=r"not a llama\.cpp LoRA adapter"):
        merge_lora(base, base, tmp_path / "merged.gguf")


def test_a_weight_the_gguf_package_cannot_requantise_is_refused_by_name(
    tmp_path: Path,
) -> None:
    # The gguf package reads K-quants but cannot write them (the bundled Q4_K_M files).
    rng = np.random.default_rng(2)
    path = tmp_path / "k.gguf"
    writer = gguf.GGUFWriter(str(path), ARCH)
    raw = rng.integers(0, 255, size=(32, 144), dtype=np.uint8)  # 32 rows of one Q4_K block
    raw[:, :4] = 0  # block scales d, dmin = 0: every value dequantises to 0
    writer.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=Q.Q4_K)  # (32, 256) values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    adapter = write_lora(tmp_path / "a.gguf", ARCH, {"blk.0.attn_q.weight": (32, 256)})
    with pytest.raises(ModelProvisioningError, match=r"blk\.0\.attn_q\.weight is Q4_K"):
        merge_lora(path, adapter, tmp_path / "merged.gguf")
    assert not list(tmp_path.glob("merged.gguf*"))


def test_a_merged_adapter_is_reported_and_not_applied_again(tmp_path: Path) -> None:
    adapter = write_lora(tmp_path / "a.gguf", ARCH, {"blk.0.attn_q.weight": (32, 64)})
    merged = EdgeSettings(lora=adapter, lora_scale=0.5, lora_merge=True)
    assert engine_config(merged).lora is None  # it is in the model file, not on every decode
    info = adapter_info(merged)
    assert info is not None
    assert (info.name, info.scale, info.merged) == ("a", 0.5, True)
    applied = EdgeSettings(lora=adapter)
    assert engine_config(applied).lora == adapter
    assert adapter_info(applied).merged is False  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="lora_merge needs lora"):
        EdgeSettings(lora_merge=True)
