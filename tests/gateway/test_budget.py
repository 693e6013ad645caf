"""How a request's max_tokens is split over the sketch and the points."""

from __future__ import annotations

import pytest

from pice_gateway.progressive.spec import AnswerBudget, answer_budget

CAPS = {"sketch_max": 160, "point_max": 96, "max_points": 8}


def test_no_limit_keeps_the_server_caps() -> None:
    assert answer_budget(None, **CAPS) == AnswerBudget(160, 96, 8)


def test_a_limit_above_everything_the_caps_allow_changes_nothing() -> None:
    assert answer_budget(160 + 8 * 96, **CAPS) == AnswerBudget(160, 96, 8)
    assert answer_budget(10_000, **CAPS) == AnswerBudget(160, 96, 8)


def test_a_lower_limit_gives_the_sketch_its_share_and_the_bodies_the_rest() -> None:
    budget = answer_budget(464, **CAPS)  # half of 928
    assert budget == AnswerBudget(80, 96, 8, limited=True, body_tokens=384)


def test_each_point_may_take_the_server_cap_when_the_limit_holds_it() -> None:
    # At 768 an equal share for eight points was 76 tokens, under the server's 96 (what cut
    # points of four- to six-point outlines); the bodies now share the 608 tokens in order.
    budget = answer_budget(768, **CAPS, frame_tokens=32)
    assert budget.sketch_tokens == 160
    assert budget.point_tokens == 96
    assert budget.body_tokens == 608


def test_a_point_never_gets_more_than_the_bodies_have() -> None:
    budget = answer_budget(100, **CAPS)
    assert budget.sketch_tokens == 17
    assert budget.point_tokens == budget.body_tokens == 83


def test_a_tiny_limit_allows_fewer_points() -> None:
    budget = answer_budget(5, **CAPS)
    assert budget.sketch_tokens == 1
    assert budget.max_points == 4
    assert budget.point_tokens == 4
    assert budget.body_tokens == 4


@pytest.mark.parametrize("limit", [2, 3, 7, 10, 50, 100, 333, 927])
def test_the_whole_answer_never_exceeds_the_limit(limit: int) -> None:
    budget = answer_budget(limit, **CAPS)
    assert budget.sketch_tokens >= 1
    assert budget.point_tokens >= 1
    assert budget.max_points >= 1
    assert budget.body_tokens is not None
    assert budget.sketch_tokens + budget.body_tokens <= limit
    # Every point the sketch may name can be given a token, and none more than the bodies have.
    assert budget.max_points <= budget.body_tokens
    assert budget.point_tokens <= budget.body_tokens


def test_a_framed_sketch_gets_its_opening_before_the_split() -> None:
    plain = answer_budget(200, **CAPS)
    framed = answer_budget(200, **CAPS, frame_tokens=32)
    assert framed.sketch_tokens == plain.sketch_tokens + 32
    assert framed.max_points == plain.max_points
    assert plain.body_tokens is not None
    assert framed.body_tokens is not None
    assert framed.body_tokens == plain.body_tokens - 32
    # Never past the sketch's own cap, and no change without a limit.
    assert answer_budget(900, **CAPS, frame_tokens=32).sketch_tokens == 160
    assert answer_budget(None, **CAPS, frame_tokens=32) == answer_budget(None, **CAPS)


@pytest.mark.parametrize("limit", [2, 3, 7, 10, 50, 100, 333, 927])
def test_a_framed_answer_never_exceeds_the_limit_either(limit: int) -> None:
    budget = answer_budget(limit, **CAPS, frame_tokens=32)
    assert min(budget.sketch_tokens, budget.point_tokens, budget.max_points) >= 1
    assert budget.body_tokens is not None
    assert budget.sketch_tokens + budget.body_tokens <= limit
