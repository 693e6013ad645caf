"""The recipe: what may change when a run is resumed, and the flags the worker gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pice.errors import ModelProvisioningError
from pice_tune.dataset import Example
from pice_tune.recipe import Recipe
from pice_tune.steps import split_by_question


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


def test_a_run_recorded_before_validation_resumes_without_it_only() -> None:
    older = Recipe(max_steps=100).to_json()
    del older["val_share"]  # runs recorded before the knob existed had none
    assert Recipe(max_steps=200).resumable_from(older)
    assert not Recipe(max_steps=200, val_share=0.1).resumable_from(older)


def test_validation_holds_out_whole_questions() -> None:
    examples = [
        Example(f"q{i}", "?", ("a", "b"), p, "body.", "t") for i in range(10) for p in (0, 1)
    ]
    train, val, held = split_by_question(examples, 0.2, seed=0)
    assert len(held) == 2
    assert {e.question_id for e in val} == set(held)
    assert not {e.question_id for e in train} & set(held)
    assert len(train) + len(val) == len(examples)
    assert split_by_question(examples, 0.2, seed=0)[2] == held  # the seed fixes the draw
    assert split_by_question(examples, 0.0, seed=0) == (examples, [], [])
    assert len(split_by_question(examples, 0.01, seed=0)[2]) == 1  # at least one question
    with pytest.raises(ModelProvisioningError, match="nothing is left"):
        split_by_question(examples, 1.0, seed=0)
