from __future__ import annotations

from pice_bench.coverage import point_covered, sketch_coverage, word_count


def test_point_covered_by_content_words() -> None:
    answer = "1. **Regular exercise**: walking daily helps. 2. **Sleep**: keep a schedule."
    assert point_covered("Regular exercise", answer)
    assert point_covered("Sleep schedule", answer)
    assert not point_covered("Balanced nutrition", answer)
    assert point_covered("The", answer)  # nothing to look for


def test_sketch_coverage_counts() -> None:
    cov = sketch_coverage(["Exercise daily", "Eat vegetables", "Meditation"], "Exercise daily.")
    assert (cov.points, cov.covered, cov.complete) == (3, 1, False)
    assert abs(cov.fraction - 1 / 3) < 1e-9
    assert sketch_coverage([], "anything").complete


def test_word_count() -> None:
    assert word_count("  one two\nthree ") == 3
