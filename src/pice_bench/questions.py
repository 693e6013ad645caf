"""Benchmark questions: one JSON object per line, validated on load.

The native format is ``{"id", "category", "question", "suits_points"}``. Any other JSONL of
questions is accepted too, as long as each line has the question text under ``question``,
``prompt`` or ``turns`` (MT-bench / Vicuna-80 style, first turn used); a missing ``id`` becomes
the line number, a missing ``category`` becomes ``"uncategorized"`` and a missing
``suits_points`` defaults to true (the bench cannot know, and PICE is what is being measured).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pice.errors import InvalidRequestError

DEFAULT_CATEGORY = "uncategorized"
# The project's question set, relative to the checkout's root.
DEFAULT_QUESTIONS = Path("benchmarks/questions.jsonl")


class QuestionsFileError(InvalidRequestError):
    """A questions file that cannot be used: unreadable, malformed or empty."""


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    suits_points: bool


def _text_of(record: dict[str, Any]) -> str | None:
    for key in ("question", "prompt"):
        value = record.get(key)
        if isinstance(value, str):
            return value
    turns = record.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[0], str):
        return turns[0]
    return None


def parse_question(record: Any, line_no: int) -> Question:
    """One question from one decoded JSON line; ``line_no`` (1-based) names it in errors."""
    where = f"line {line_no}"
    if not isinstance(record, dict):
        raise QuestionsFileError(f"{where}: expected a JSON object")
    text = _text_of(record)
    if text is None or not text.strip():
        raise QuestionsFileError(f"{where}: no question text (use 'question', 'prompt' or 'turns')")
    raw_id = record.get("id", record.get("question_id", line_no))
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise QuestionsFileError(f"{where}: 'id' must be a string or an integer")
    category = record.get("category", DEFAULT_CATEGORY)
    if not isinstance(category, str) or not category.strip():
        raise QuestionsFileError(f"{where}: 'category' must be a non-empty string")
    suits = record.get("suits_points", True)
    if not isinstance(suits, bool):
        raise QuestionsFileError(f"{where}: 'suits_points' must be true or false")
    return Question(
        id=str(raw_id), category=category.strip(), question=text.strip(), suits_points=suits
    )


def parse_questions(lines: Iterable[str]) -> list[Question]:
    """Questions from JSONL text lines; blank lines are skipped, ids must be unique."""
    questions: list[Question] = []
    seen: set[str] = set()
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionsFileError(f"line {line_no}: invalid JSON ({exc.msg})") from exc
        question = parse_question(record, line_no)
        if question.id in seen:
            raise QuestionsFileError(f"line {line_no}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise QuestionsFileError("the questions file holds no questions")
    return questions


def default_questions_path() -> Path:
    if DEFAULT_QUESTIONS.exists():
        return DEFAULT_QUESTIONS
    # Running outside the checkout's root: the file next to the source tree.
    return Path(__file__).resolve().parents[2] / DEFAULT_QUESTIONS


def load_questions(path: Path) -> list[Question]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuestionsFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return parse_questions(text.splitlines())
    except QuestionsFileError as exc:
        raise QuestionsFileError(f"{path}: {exc.message}") from exc


def select_questions(
    questions: Sequence[Question], *, per_category: int | None = None, limit: int | None = None
) -> list[Question]:
    """A deterministic subset: the first ``per_category`` of each category, then ``limit``.

    Taking from every category (rather than the head of the file) keeps a quick run's
    per-category table meaningful.
    """
    chosen: list[Question] = []
    taken: dict[str, int] = {}
    for question in questions:
        count = taken.get(question.category, 0)
        if per_category is not None and count >= per_category:
            continue
        taken[question.category] = count + 1
        chosen.append(question)
    return chosen if limit is None else chosen[:limit]


def spread(questions: Sequence[Question], count: int) -> list[Question]:
    """``count`` questions taken round-robin over the categories, each in file order."""
    by_category: dict[str, list[Question]] = {}
    for question in questions:
        by_category.setdefault(question.category, []).append(question)
    queues = list(by_category.values())
    chosen: list[Question] = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues):
        chosen += [q[depth] for q in queues if depth < len(q)][: count - len(chosen)]
        depth += 1
    return chosen


def select_by_suitability(
    questions: Sequence[Question], *, suitable: int, unsuitable: int = 0
) -> list[Question]:
    """``suitable`` questions that suit points and ``unsuitable`` that do not, each group
    spread over its categories; fewer when the file has fewer. The quality figure is computed
    on the suitable ones, so they are what a run needs many of."""
    return spread([q for q in questions if q.suits_points], suitable) + spread(
        [q for q in questions if not q.suits_points], unsuitable
    )
