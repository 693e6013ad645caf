"""The dataset file: canonical lines, its hash, its manifest, and the question sources."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edge_agent.prompts import SYSTEM_PROMPT, point_suffix
from pice_tune.dataset import (
    Example,
    data_hash,
    load_questions,
    manifest_path,
    read_dataset,
    training_record,
    write_dataset,
)
from pice_tune.filters import stem, words

ROOT = Path(__file__).resolve().parents[2]


def example(body: str = "Salt lowers the freezing point of water.", index: int = 0) -> Example:
    return Example(
        question_id="tune-001",
        question="Why do people put salt on icy roads?",
        sketch=("Lowers freezing point", "Improves grip"),
        index=index,
        body=body,
        teacher="teacher-model",
    )


def test_the_hash_is_the_written_files_sha256(tmp_path: Path) -> None:
    examples = [example(), example("Grit gives tyres traction.", 1)]
    path = tmp_path / "data.jsonl"
    manifest = write_dataset(path, examples, {"teacher": "t"})
    assert manifest["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["data_sha256"] == data_hash(examples)
    assert json.loads(manifest_path(path).read_text())["examples"] == 2
    assert read_dataset(path) == (examples, manifest["data_sha256"])


def test_the_hash_changes_with_any_field_and_with_order() -> None:
    a, b = example(), example("Grit gives tyres traction.", 1)
    assert data_hash([a, b]) != data_hash([b, a])
    assert data_hash([a]) != data_hash([example("Salt lowers the freezing point.")])


def test_a_file_edited_after_writing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_dataset(path, [example()], {})
    path.write_text(path.read_text().replace("Salt", "Sand"))
    with pytest.raises(ValueError, match="changed after it was written"):
        read_dataset(path)


def test_a_line_of_another_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="schema"):
        Example.from_json({**example().to_json(), "schema": 99})


def test_a_training_record_is_the_edges_own_prompt() -> None:
    record = training_record(example(index=1, body="  Grit gives tyres traction. "))
    assert record["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "2. Improves grip" in record["messages"][-1]["content"]
    assert record["prefix"] == point_suffix(1, "Improves grip")
    # The edge stops at a newline: the target ends with one so the model learns to stop.
    assert record["completion"] == " Grit gives tyres traction.\n"


def _questions(path: Path, key: str = "question") -> set[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {" ".join(str(row[key]).lower().split()) for row in rows}


EVALUATION_SETS = [
    ROOT / "benchmarks" / "questions.jsonl",
    ROOT / "benchmarks" / "router" / "heldout.jsonl",
    ROOT / "benchmarks" / "router" / "bench_questions.jsonl",
    ROOT / "src" / "pice_gateway" / "router" / "data" / "train.jsonl",
    ROOT / "src" / "pice_gateway" / "router" / "data" / "dev.jsonl",
]
# Words too common to tell two questions apart ("What would happen if ..." is not a topic).
_FILLER = set(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "how",
        "what",
        "why",
        "do",
        "does",
        "is",
        "are",
        "be",
        "can",
        "i",
        "you",
        "your",
        "my",
        "should",
        "would",
        "could",
        "will",
        "if",
        "with",
        "as",
        "at",
        "by",
        "it",
        "that",
        "this",
        "which",
        "about",
        "had",
        "have",
        "been",
        "never",
        "when",
        "where",
        "who",
    ]
)


def _topic(question: str) -> set[str]:
    return {stem(w) for w in words(question) if w not in _FILLER}


def test_tuning_questions_are_disjoint_from_every_benchmark_and_router_set() -> None:
    tune = {" ".join(q.question.lower().split()) for q in load_questions()}
    assert len(tune) >= 120
    for path in EVALUATION_SETS:
        assert path.exists(), path
        assert not tune & _questions(path), path


def test_no_training_question_is_a_rewording_of_an_evaluation_question() -> None:
    """A tripwire for near-copies ("... photosynthesise like plants?" asked with another verb):
    the share of topic words two questions have in common stays under a half. It does not
    prove two questions differ in meaning; the set was also read by hand (docs/fine-tuning.md)."""
    evaluation = [q for path in EVALUATION_SETS for q in _questions(path)]
    for q in load_questions():
        if q.split != "train":
            continue
        topic = _topic(q.question)
        for other in evaluation:
            theirs = _topic(other)
            overlap = len(topic & theirs) / len(topic | theirs)
            assert overlap < 0.5, (q.id, q.question, other)


def test_every_category_keeps_a_held_out_question() -> None:
    questions = load_questions()
    ids = [q.id for q in questions]
    assert len(ids) == len(set(ids))
    categories = {q.category for q in questions}
    assert categories == {q.category for q in questions if q.split == "dev"}
    assert {q.split for q in questions} == {"train", "dev"}
