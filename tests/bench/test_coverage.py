from __future__ import annotations

from pice_bench.coverage import (
    PointFailure,
    check_point,
    point_bodies,
    sketch_coverage,
    word_count,
)

GOOD = (
    "1. **Regular exercise**: Walk for thirty minutes daily; it strengthens the heart.\n"
    "2. **Sleep**: Keep a fixed bedtime and a dark, quiet bedroom.\n"
)


def test_bodies_are_cut_at_each_header() -> None:
    assert point_bodies(["Regular exercise", "Sleep"], GOOD) == [
        "Walk for thirty minutes daily; it strengthens the heart.",
        "Keep a fixed bedtime and a dark, quiet bedroom.",
    ]
    assert point_bodies(["Regular exercise", "Diet"], GOOD)[1] is None


def test_a_well_expanded_answer_is_fully_covered() -> None:
    cov = sketch_coverage(["Regular exercise", "Sleep"], GOOD)
    assert (cov.points, cov.covered, cov.complete, cov.fraction) == (2, 2, True, 1.0)


def test_a_missing_header_fails() -> None:
    cov = sketch_coverage(["Regular exercise", "Diet"], GOOD)
    assert cov.failures == [(1, "Diet", PointFailure.MISSING)]


def test_an_empty_body_fails() -> None:
    text = "1. **Exercise**:\n2. **Sleep**: Keep a fixed bedtime and a dark, quiet bedroom.\n"
    assert sketch_coverage(["Exercise", "Sleep"], text).failures == [
        (0, "Exercise", PointFailure.EMPTY)
    ]
    assert check_point("Exercise", " ... ", []) is PointFailure.EMPTY


def test_a_body_that_restates_its_title_fails() -> None:
    text = "1. **Regular exercise habits**: Regular exercise is a habit.\n"
    cov = sketch_coverage(["Regular exercise habits"], text)
    assert cov.failures == [(0, "Regular exercise habits", PointFailure.RESTATES)]
    assert cov.fraction == 0.0


def test_a_body_that_restates_the_question_fails_when_given_as_context() -> None:
    body = "If the internet had never been invented, communication would be different."
    question = "What if the internet had never been invented? How would communication differ?"
    assert check_point("Communication", body, []) is None
    assert check_point("Communication", body, [], context=question) is PointFailure.RESTATES


def test_a_body_that_repeats_an_earlier_one_fails() -> None:
    body = "Drink water often, eat vegetables and fruit, and avoid sugary snacks."
    text = f"1. **Diet**: {body}\n2. **Hydration**: {body}\n"
    assert sketch_coverage(["Diet", "Hydration"], text).failures == [
        (1, "Hydration", PointFailure.DUPLICATE)
    ]


def test_no_points_is_complete() -> None:
    assert sketch_coverage([], "anything").complete


def test_word_count() -> None:
    assert word_count("  one two\nthree ") == 3
