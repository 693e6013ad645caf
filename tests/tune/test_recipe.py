"""The recipe: what may change when a run is resumed, and the flags the worker gets."""

from __future__ import annotations

from dataclasses import replace

from pice_tune.recipe import Recipe


def test_more_steps_resume_a_run_but_any_other_change_does_not() -> None:
    recorded = Recipe(max_steps=100).to_json()
    assert Recipe(max_steps=300).resumable_from(recorded)
    assert not Recipe(max_steps=300, rank=8).resumable_from(recorded)
    assert not replace(Recipe(), targets=("q_proj",)).resumable_from(recorded)
    assert not Recipe(lr=1e-4).resumable_from(recorded)


def test_worker_flags_carry_every_knob() -> None:
    recipe = Recipe(rank=4, alpha=8.0, max_steps=3, seq_len=128, targets=("q_proj", "v_proj"))
    args = recipe.worker_args()
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--rank"] == "4"
    assert flags["--alpha"] == "8.0"
    assert flags["--max-steps"] == "3"
    assert flags["--seq-len"] == "128"
    assert flags["--targets"] == "q_proj,v_proj"
    assert set(flags) >= {"--dropout", "--lr", "--batch-size", "--seed"}
