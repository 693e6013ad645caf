"""Grades as expectations over the judge's own probabilities, not the one digit it wrote.

A small judge writes "8" for most competent answers (the bundled 1.5B gave 81% of its grades
as 8), so integer grades call most pairs a tie that the judge did in fact lean on. Where the
judge's server returns token log-probabilities (vLLM, the edge agent; OpenAI's ``logprobs`` /
``top_logprobs``), each grade is read as the probability-weighted mean of the digits it could
have written at that position (the G-Eval method, Liu et al. 2023), so "8 with 60%, 7 with
40%" is 7.6. Both orders are still asked, and the position bonus cancels the same way.

Qwen's tokenizer writes numbers digit by digit, so "10" is "1" then "0": a "1" counts as 10
when the judge went on to write "0" there, else as 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Text before a grade: "Score A:", "**Score A:**", "Score for Assistant B =", "A: ".
_LABEL = re.compile(r"(?:score[^\n:=]*?)?\b(A|B)\b[\s*_]*[:=]?[\s*_]*$", re.IGNORECASE)
_DIGITS = {str(d): d for d in range(1, 11)}


def _grade_at(entries: Sequence[Mapping[str, Any]], i: int) -> float | None:
    """The expected grade at token ``i`` (a digit the judge wrote), from its alternatives."""
    chosen = str(entries[i].get("token", "")).strip()
    follows_zero = i + 1 < len(entries) and str(entries[i + 1].get("token", "")).startswith("0")
    weights: dict[int, float] = {}
    for alt in entries[i].get("top_logprobs") or []:
        token = str(alt.get("token", "")).strip()
        if token not in _DIGITS:
            continue
        value = _DIGITS[token]
        if value == 1 and token == chosen and follows_zero:
            value = 10
        weights[value] = weights.get(value, 0.0) + math.exp(float(alt["logprob"]))
    total = sum(weights.values())
    if total <= 0.0:
        return None
    return sum(v * w for v, w in weights.items()) / total


def expected_grades(entries: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """(answer A, answer B) expected grades from a reply's ``logprobs.content``; ``None``
    unless both labels are followed by a digit with digit alternatives."""
    text = ""
    found: dict[str, float] = {}
    for i, entry in enumerate(entries):
        token = str(entry.get("token", ""))
        if token.strip() in _DIGITS:
            label = _LABEL.search(text)
            if label is not None and label.group(1).upper() not in found:
                grade = _grade_at(entries, i)
                if grade is not None:
                    found[label.group(1).upper()] = grade
        text += token
    if "A" not in found or "B" not in found:
        return None
    return found["A"], found["B"]
