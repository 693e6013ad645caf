"""The KV-cell budget: fitting, clamping, FIFO-relevant admission, without a model."""

from __future__ import annotations

import pytest

from edge_agent.engine.admission import CellBudget, JobCost, headroom_cells
from pice.errors import ContextOverflowError, InvalidRequestError


def test_prefix_counts_once_and_each_sequence_its_own_cells() -> None:
    cost = JobCost(100, (5, 7, 9), (10, 10, 10))
    assert cost.prompt_tokens == 121
    assert cost.cells == 151
    assert cost.sequence_cells(1) == 17


def test_admit_reserves_and_release_returns_cells_and_slots() -> None:
    budget = CellBudget(1024, max_sequences=4)
    cost = JobCost(100, (5, 5), (50, 50))
    ids = budget.admit(cost)
    assert sorted(ids) == [0, 1]
    assert budget.reserved_cells == cost.cells
    assert budget.free_slots == 2
    budget.release(cost.sequence_cells(0), ids[0])
    budget.release(cost.sequence_cells(1), ids[1])
    budget.release(cost.prefix_tokens)
    assert budget.reserved_cells == 0
    assert budget.free_slots == 4


def test_can_admit_respects_slots_and_cells() -> None:
    budget = CellBudget(1024, max_sequences=2)
    big = JobCost(10, (0,), (900,))
    assert budget.can_admit(big)
    budget.admit(big)
    assert not budget.can_admit(JobCost(10, (0,), (200,)))  # cells
    assert budget.can_admit(JobCost(10, (0,), (20,)))
    budget.admit(JobCost(10, (0,), (20,)))
    assert not budget.can_admit(JobCost(1, (0,), (1,)))  # slots


def test_prompt_longer_than_context_is_refused() -> None:
    budget = CellBudget(512, max_sequences=4)
    with pytest.raises(ContextOverflowError):
        budget.fit(JobCost(600, (0,), (10,)))


def test_max_tokens_clamped_to_what_fits() -> None:
    budget = CellBudget(512, max_sequences=4)
    usable = 512 - headroom_cells(512)
    fitted = budget.fit(JobCost(400, (0, 0), (500, 20)))
    assert fitted.cells <= usable
    assert fitted.max_tokens[1] == 20
    assert 1 <= fitted.max_tokens[0] < 500


def test_more_sequences_than_slots_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequestError):
        CellBudget(4096, max_sequences=2).fit(JobCost(10, (1, 1, 1), (5, 5, 5)))
