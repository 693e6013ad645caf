"""Named LoRA adapters (``--lora-module NAME=PATH``), chosen per request by "model".

The batcher over the fake context (tests/edge/fake_llama.py), which records the adapter each
decode ran under, answers in upper case under an adapter and refuses to decode a sequence over
KV cells computed under another adapter; then the settings and the flag; then the real routes
over a fake engine (``/v1/models``, the chat route's choice of adapter, unknown names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.api.app import engine_config
from edge_agent.engine.admission import CellBudget
from edge_agent.engine.batcher import Batcher
from edge_agent.engine.engine import NamedAdapter
from edge_agent.engine.warmup import warm_up
from edge_agent.settings import EdgeSettings, LoraModule, load_settings
from pice_cli.main import build_parser
from tests.edge.fake_llama import FakeContext, SamplerFactory
from tests.edge.test_backend_seam import AUTH, MODEL_ID, serve, until_ready
from tests.edge.test_batcher_fake import SHARED, Job, Rig, say
from tests.support.fake_engine import FakeBackend

MAX_SEQUENCES = 4  # as tests/edge/test_batcher_fake.py (Rig.assert_idle)
CACHE_SLOTS = 2


@pytest.fixture
def rig() -> Iterator[Rig]:
    ctx = FakeContext(n_ctx=1024, n_seq_max=MAX_SEQUENCES + CACHE_SLOTS)
    samplers = SamplerFactory()
    cache_ids = range(MAX_SEQUENCES, MAX_SEQUENCES + CACHE_SLOTS)
    batcher = Batcher(ctx, CellBudget(1024, MAX_SEQUENCES), 128, cache_ids, new_sampler=samplers)
    yield Rig(ctx, batcher, samplers, cache_ids)
    batcher.batch.close()


def seq_ids(*jobs: Job) -> set[int]:
    return {seq.seq_id for job in jobs for seq in job.state.sequences}


def batch_seqs(rig: Rig, i: int) -> set[int]:
    return {s for row in rig.ctx.batches[i] for s in row.seq_ids}


# -- the batcher -------------------------------------------------------------------------


def test_two_adapters_in_one_step_decode_apart_each_under_its_own(rig: Rig) -> None:
    base = rig.submit("", say("hello"), say("there"))
    tuned = rig.submit("", say("hello"), say("there"), adapter="tuned")
    rig.tick()
    # One step, two decodes: the base group's, then the tuned group's, each with its adapter.
    assert rig.ctx.adapters == [None, "tuned"]
    assert batch_seqs(rig, 0) == seq_ids(base)
    assert batch_seqs(rig, 1) == seq_ids(tuned)
    assert rig.batcher.counters.decode_steps == 1
    rig.tick()
    # Round robin: the next step starts with the other group.
    assert rig.ctx.adapters[2:] == ["tuned", None]
    rig.run()
    for i, adapter in enumerate(rig.ctx.adapters):
        assert batch_seqs(rig, i) <= seq_ids(tuned if adapter else base)
    assert base.texts() == ["hello", "there"]
    assert tuned.texts() == ["HELLO", "THERE"]
    rig.assert_idle()


def test_one_active_adapter_is_one_decode_per_step_and_one_switch(rig: Rig) -> None:
    jobs = [rig.submit("", say(f"answer {i}"), adapter="tuned") for i in range(3)]
    steps = 0
    while rig.batcher.busy:
        assert rig.tick()
        steps += 1
        assert len(rig.ctx.batches) == steps  # never more than one decode per step
    assert [j.texts() for j in jobs] == [["ANSWER 0"], ["ANSWER 1"], ["ANSWER 2"]]
    assert set(rig.ctx.adapters) == {"tuned"}
    assert rig.ctx.switches == 1  # selected once, not before every decode
    rig.assert_idle()


def test_the_base_model_alone_never_touches_the_adapters(rig: Rig) -> None:
    job = rig.submit("", say("plain"), say("text"))
    rig.run()
    assert job.texts() == ["plain", "text"]
    assert rig.ctx.switches == 0
    assert rig.batcher.counters.decode_steps == len(rig.ctx.batches)


def test_a_group_that_finishes_leaves_the_other_decoding_alone(rig: Rig) -> None:
    short = rig.submit("", say("a"))
    long = rig.submit("", say("a much longer answer"), adapter="tuned")
    rig.run()
    assert (short.texts(), long.texts()) == (["a"], ["A MUCH LONGER ANSWER"])
    # Once the base job is done, each step is one decode of the tuned group.
    last_base = max(i for i, a in enumerate(rig.ctx.adapters) if a is None)
    assert rig.ctx.adapters[last_base + 1 :] == ["tuned"] * (len(rig.ctx.adapters) - last_base - 1)
    assert len(rig.ctx.adapters) - last_base - 1 >= 10
    rig.assert_idle()


def test_the_prefix_cache_never_shares_kv_across_adapters(rig: Rig) -> None:
    cache = rig.batcher.cache
    first = rig.submit(SHARED, say("one"))
    rig.run()
    assert [e.adapter for e in cache.entries] == [None]
    # Same prefix under the adapter: the base model's cells are not reused (the fake context
    # would refuse to decode over them), the prefix is prefilled and cached for the adapter.
    tuned = rig.submit(SHARED, say("two"), adapter="tuned")
    rig.run()
    assert cache.stats.hits == 0
    assert tuned.state.reused == 0
    assert sorted(str(e.adapter) for e in cache.entries) == ["None", "tuned"]
    again = rig.submit(SHARED, say("three"), adapter="tuned")
    base = rig.submit(SHARED, say("four"))
    rig.run()
    assert cache.stats.hits == 2  # each reused its own adapter's entry
    assert again.state.reused > 0
    assert base.state.reused > 0
    assert [first.texts(), tuned.texts(), again.texts(), base.texts()] == [
        ["one"],
        ["TWO"],
        ["THREE"],
        ["four"],
    ]
    rig.assert_idle()


def test_a_cached_prefix_is_superseded_only_by_its_own_adapter(rig: Rig) -> None:
    cache = rig.batcher.cache
    rig.submit(SHARED, say("one"))
    rig.run()
    rig.submit(SHARED + "and more words", say("two"), adapter="tuned")
    rig.run()
    # The longer tuned prefix begins with the base entry but does not replace it.
    assert sorted((str(e.adapter), e.cells) for e in cache.entries) == [
        ("None", len(SHARED)),
        ("tuned", len(SHARED) + len("and more words")),
    ]


def test_the_warm_up_can_run_under_a_named_adapter(rig: Rig) -> None:
    report = warm_up(rig.batcher, 1, max_tokens=2, adapter="tuned")
    assert report.generated_tokens == 2
    assert set(rig.ctx.adapters) == {"tuned"}


# -- settings and the flag ---------------------------------------------------------------


def test_a_module_is_name_equals_path_with_an_optional_scale() -> None:
    assert LoraModule.parse("pice-sketcher=/m/sk.gguf") == LoraModule(
        name="pice-sketcher", path=Path("/m/sk.gguf"), scale=1.0
    )
    assert LoraModule.parse("tuned=/m/a.gguf:0.5").scale == 0.5
    # A colon that is not followed by a number belongs to the path.
    assert LoraModule.parse("x=/m/a:b.gguf").path == Path("/m/a:b.gguf")
    for bad in ("no-equals.gguf", "=/m/a.gguf", "name=", "bad,name=/a.gguf"):
        with pytest.raises(ValueError, match="lora_modules"):
            EdgeSettings(lora_modules=[bad])


def test_the_flag_repeats_and_the_environment_takes_a_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = build_parser().parse_args(
        ["edge", "serve", "--lora-module", "a=/m/a.gguf", "--lora-module", "b=/m/b.gguf:0.25"]
    )
    settings = load_settings(None, lora_modules=args.lora_modules)
    assert [(m.name, m.path, m.scale) for m in settings.lora_modules] == [
        ("a", Path("/m/a.gguf"), 1.0),
        ("b", Path("/m/b.gguf"), 0.25),
    ]
    assert engine_config(settings).lora_modules == (
        NamedAdapter("a", Path("/m/a.gguf"), 1.0),
        NamedAdapter("b", Path("/m/b.gguf"), 0.25),
    )
    monkeypatch.setenv("PICE_EDGE_LORA_MODULES", "a=/m/a.gguf, b=/m/b.gguf:2")
    assert [m.scale for m in load_settings().lora_modules] == [1.0, 2.0]
    # YAML may give maps as well.
    assert (
        EdgeSettings(lora_modules=[{"name": "c", "path": "/m/c.gguf"}]).lora_modules[0].name == "c"
    )


def test_two_modules_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="unique: a"):
        EdgeSettings(lora_modules=["a=/m/a.gguf", "a=/m/b.gguf"])


# -- the routes over a fake engine -------------------------------------------------------


@pytest.fixture
def adapter_file(tmp_path: Path) -> Path:
    path = tmp_path / "sketcher-v1.gguf"
    path.write_bytes(b"GGUF sketcher")
    return path


async def test_models_lists_each_module_as_a_model_of_its_own(adapter_file: Path) -> None:
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake, lora_modules=[f"pice-sketcher={adapter_file}:0.5"]) as client:
        await until_ready(client)
        models = (await client.get("/v1/models", headers=AUTH)).json()
        load = (await client.get("/v1/load", headers=AUTH)).json()
    base, module = models["data"]
    assert base["id"] == MODEL_ID
    assert base["adapter"] is None
    assert base["parent"] is None
    assert module == {
        "id": "pice-sketcher",
        "object": "model",
        "created": base["created"],
        "owned_by": "pice-edge",
        "parent": MODEL_ID,
        "adapter": {
            "name": "sketcher-v1",
            "scale": 0.5,
            "sha256": hashlib.sha256(b"GGUF sketcher").hexdigest(),
            "merged": False,
        },
    }
    # /v1/load keeps naming the context-wide adapter only (none here).
    assert load["adapter"] is None


async def test_the_model_name_chooses_the_adapter_and_unknown_names_stay_404(
    adapter_file: Path,
) -> None:
    fake = FakeBackend()
    fake.may_start.set()

    def chat(model: str, **extra: Any) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}

    async with serve(fake, lora_modules=[f"pice-sketcher={adapter_file}"]) as client:
        await until_ready(client)
        sketch = await client.post("/v1/chat/completions", json=chat("pice-sketcher"), headers=AUTH)
        streamed = await client.post(
            "/v1/chat/completions", json=chat("pice-sketcher", stream=True), headers=AUTH
        )
        plain = await client.post("/v1/chat/completions", json=chat(MODEL_ID), headers=AUTH)
        alias = await client.post("/v1/chat/completions", json=chat("fake-model"), headers=AUTH)
        unknown = await client.post("/v1/chat/completions", json=chat("other"), headers=AUTH)
        # The expansion route carries no model name: it always decodes with the base model.
        expand = await client.post(
            "/v1/expand", json={"question": "q", "sketch": ["a"]}, headers=AUTH
        )
    assert sketch.status_code == 200
    assert sketch.json()["model"] == "pice-sketcher"
    assert '"model":"pice-sketcher"' in streamed.text
    assert plain.json()["model"] == MODEL_ID
    assert alias.status_code == 200
    assert expand.status_code == 200
    assert [job.spec.adapter for job in fake.jobs] == [
        "pice-sketcher",
        "pice-sketcher",
        None,
        None,
        None,
    ]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


async def test_a_module_named_like_the_base_model_is_refused_at_start(adapter_file: Path) -> None:
    fake = FakeBackend()
    fake.may_start.set()
    with pytest.raises(ValueError, match="names the base model: fake-model"):
        async with serve(fake, lora_modules=[f"fake-model={adapter_file}"]):
            pass
