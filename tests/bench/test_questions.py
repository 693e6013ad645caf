from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pice_bench.questions import (
    DEFAULT_CATEGORY,
    Question,
    QuestionsFileError,
    load_questions,
    parse_questions,
    select_by_suitability,
    select_questions,
    spread,
)

BUNDLED = Path(__file__).resolve().parents[2] / "benchmarks" / "questions.jsonl"


def test_bundled_question_set_is_valid_and_balanced() -> None:
    questions = load_questions(BUNDLED)
    assert len(questions) >= 60
    categories = Counter(q.category for q in questions)
    assert set(categories) == {
        "generic", "knowledge", "common-sense", "roleplay", "counterfactual",
        "writing", "math", "coding", "fermi", "fact",
    }  # fmt: skip
    suits = sum(q.suits_points for q in questions) / len(questions)
    assert 0.55 <= suits <= 0.75  # "roughly 2/3 suit point-by-point answers"


def test_native_format() -> None:
    [q] = parse_questions(
        ['{"id": "g1", "category": "generic", "question": " Why? ", "suits_points": false}']
    )
    assert (q.id, q.category, q.question, q.suits_points) == ("g1", "generic", "Why?", False)


def test_foreign_formats_get_defaults() -> None:
    lines = [
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Compose a blog post."]}),
        "",
        json.dumps({"prompt": "Name three rivers."}),
    ]
    first, second = parse_questions(lines)
    assert (first.id, first.category, first.question) == ("81", "writing", "Compose a blog post.")
    assert first.suits_points is True
    assert (second.id, second.category) == ("3", DEFAULT_CATEGORY)  # id from the line number


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: invalid JSON"),
        ("[1, 2]", "line 1: expected a JSON object"),
        ('{"id": "x"}', "no question text"),
        ('{"question": "q", "suits_points": "yes"}', "suits_points"),
        ('{"question": "q", "category": ""}', "category"),
        ('{"question": "q", "id": [1]}', "'id'"),
    ],
)
def test_malformed_lines_are_refused_with_their_line(line: str, message: str) -> None:
    with pytest.raises(QuestionsFileError, match=message):
        parse_questions([line])


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuestionsFileError, match="duplicate id 'a'"):
        parse_questions(['{"id": "a", "question": "q"}', '{"id": "a", "question": "r"}'])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(QuestionsFileError, match="no questions"):
        load_questions(empty)
    with pytest.raises(QuestionsFileError, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


def test_select_takes_from_every_category() -> None:
    questions = load_questions(BUNDLED)
    chosen = select_questions(questions, per_category=1)
    assert len(chosen) == len({q.category for q in questions})
    assert len({q.category for q in chosen}) == len(chosen)
    two = select_questions(questions, per_category=2)
    assert max(Counter(q.category for q in two).values()) == 2
    assert select_questions(questions, per_category=2, limit=3) == two[:3]


def test_the_bundled_file_has_enough_questions_of_each_kind() -> None:
    questions = load_questions(BUNDLED)
    assert sum(q.suits_points for q in questions) >= 48
    for category in ("math", "fact", "fermi", "coding", "writing"):
        other = [q for q in questions if q.category == category and not q.suits_points]
        assert len(other) >= 4, category
    chosen = select_by_suitability(questions, suitable=48, unsuitable=20)
    assert len(chosen) == 68
    assert all(q.suits_points for q in chosen[:48])
    assert not any(q.suits_points for q in chosen[48:])
    assert len({q.id for q in chosen}) == 68
    # The unsuitable 20 cover all five of their categories, four each.
    assert {q.category for q in chosen[48:]} == {"math", "fact", "fermi", "coding", "writing"}


def test_spread_goes_round_robin_over_categories_in_file_order() -> None:
    qs = [Question(f"{c}{i}", c, "?", True) for c in "ab" for i in range(3)]
    qs.append(Question("c0", "c", "?", True))
    assert [q.id for q in spread(qs, 5)] == ["a0", "b0", "c0", "a1", "b1"]
    assert len(spread(qs, 99)) == 7
    assert select_by_suitability(qs, suitable=2, unsuitable=3) == qs[:1] + qs[3:4]
