"""``pice tune``'s roles: an expander run and a sketcher run never share a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from pice.errors import ModelProvisioningError
from pice_tune import worker
from pice_tune.cli import ROLES, _data_path, _run_dir, register
from pice_tune.dataset import SketchExample, write_dataset
from pice_tune.recipe import Recipe
from pice_tune.steps import TrainOptions, run_train


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["tune", "--workdir", "W", *argv])


def test_each_role_has_its_own_files_and_models() -> None:
    expander, sketcher = ROLES["expander"], ROLES["sketcher"]
    for field in ("data", "run", "adapter", "merged"):
        assert getattr(expander, field) != getattr(sketcher, field), field
    assert _data_path(parse("data")) == Path("W/data-v1.jsonl")
    assert _data_path(parse("data", "--role", "sketcher")) == Path("W/sketch-v1.jsonl")
    assert _run_dir(parse("train", "--role", "sketcher")) == Path("W/run-sketcher")
    assert _run_dir(parse("train")) == Path("W/run")
    assert sketcher.base_model == sketcher.model == "qwen2.5-coder-1.5b-instruct"
    assert expander.model == "qwen2.5-coder-0.5b-instruct-q8_0"


def test_export_takes_model_and_still_the_older_edge_model() -> None:
    assert parse("export", "--model", "m").model == "m"
    assert parse("export", "--edge-model", "e").model == "e"
    assert parse("export").model is None  # the role's model


def test_sampling_flags_reach_the_data_step() -> None:
    args = parse("data", "--role", "sketcher", "--samples", "6", "--temperature", "0.9")
    assert (args.role, args.samples, args.temperature, args.seed) == ("sketcher", 6, 0.9, 0)
    assert args.frame is False
    assert parse("data", "--role", "sketcher", "--frame").frame is True


def test_a_sketcher_learns_one_form_framed_or_not(tmp_path: Path) -> None:
    def sketch(qid: str, opening: str | None) -> SketchExample:
        closing = None if opening is None else "That is all."
        return SketchExample(qid, "Q?", ("A", "B", "C"), "t", 0, 1.0, opening, closing)

    data = tmp_path / "sketch-v1.jsonl"
    write_dataset(data, [sketch("q1", "Three things:"), sketch("q2", None)], {})
    options = TrainOptions(
        data=data, run_dir=tmp_path / "run", recipe=Recipe(), venv=tmp_path / "no-venv"
    )
    with pytest.raises(ModelProvisioningError, match="mixes framed and unframed"):
        run_train(options)


class FakeTokenizer:
    """Characters as tokens; ``<E>`` one special token, as Qwen's ``<|im_end|>`` is."""

    all_special_ids = (1000,)
    eos_token_id = 1000

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool) -> str:
        return "".join(f"<{m['role']}>{m['content']}<E>\n" for m in messages)

    def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
        parts = text.split("<E>")
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i:
                ids.append(1000)
            ids.extend(ord(c) for c in part)
        return {"input_ids": ids}


def test_the_end_of_turn_is_read_from_the_template_up_to_its_special_token() -> None:
    messages = [{"role": "user", "content": "q"}]
    # "<E>\n" follows a turn: the model must learn <E> (what stops generation), not the "\n".
    assert worker.end_of_turn_ids(FakeTokenizer(), messages) == [1000]


def test_a_step_that_cannot_start_says_why_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pice_cli.main import main

    outlines = tmp_path / "data-v1.jsonl"  # the expander's data step never ran here
    argv = ["tune", "--workdir", str(tmp_path), "data", "--role", "preference"]
    assert main([*argv, "--outlines", str(outlines)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no outlines in ")
    assert "Traceback" not in err
    assert not list(tmp_path.glob("pairs*")), "nothing written"
