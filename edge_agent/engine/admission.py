"""KV-cell and sequence-slot accounting: what a job costs, whether it can ever fit, and when.

A job costs its prefix cells once plus, per sequence, its suffix and ``max_tokens`` cells,
and one sequence slot per sequence. The budget is the context size minus some headroom: the
accounting is exact in cells, but llama.cpp may still want a few spare cells to place a
batch, and a decode that finds no slot is an error path we want to be rare.
"""

from __future__ import annotations

from dataclasses import dataclass

from pice.errors import ContextOverflowError, InvalidRequestError


@dataclass(frozen=True)
class JobCost:
    prefix_tokens: int
    suffix_tokens: tuple[int, ...]
    max_tokens: tuple[int, ...]

    @property
    def sequences(self) -> int:
        return len(self.suffix_tokens)

    @property
    def prompt_tokens(self) -> int:
        return self.prefix_tokens + sum(self.suffix_tokens)

    @property
    def cells(self) -> int:
        return self.prompt_tokens + sum(self.max_tokens)

    def sequence_cells(self, seq: int) -> int:
        return self.suffix_tokens[seq] + self.max_tokens[seq]


def headroom_cells(n_ctx: int) -> int:
    return max(16, n_ctx // 32)


class CellBudget:
    """Cells and sequence slots reserved by admitted jobs. Used by the engine thread only."""

    def __init__(self, n_ctx: int, max_sequences: int) -> None:
        self.total_cells = n_ctx
        self.usable_cells = n_ctx - headroom_cells(n_ctx)
        self.max_sequences = max_sequences
        self.reserved_cells = 0
        self._free_slots = list(range(max_sequences - 1, -1, -1))

    @property
    def free_slots(self) -> int:
        return len(self._free_slots)

    def fit(self, cost: JobCost) -> JobCost:
        """Check that ``cost`` can ever run; clamp ``max_tokens`` so it fits the whole context.

        Raises ContextOverflowError when the prompt alone leaves no room to generate, and
        InvalidRequestError when the job has more sequences than this engine can ever run.
        """
        if cost.sequences > self.max_sequences:
            raise InvalidRequestError(
                f"This job needs {cost.sequences} sequences; this edge runs at most "
                f"{self.max_sequences} at once.",
                param="n",
            )
        room = self.usable_cells - cost.prompt_tokens
        per_sequence = room // max(cost.sequences, 1)
        if per_sequence < 1:
            raise ContextOverflowError(
                f"The prompt needs {cost.prompt_tokens} tokens of context; this model's "
                f"context holds {self.usable_cells}.",
                param="messages",
            )
        if cost.cells <= self.usable_cells:
            return cost
        return JobCost(
            cost.prefix_tokens,
            cost.suffix_tokens,
            tuple(min(m, per_sequence) for m in cost.max_tokens),
        )

    def can_reserve(self, cells: int) -> bool:
        return self.reserved_cells + cells <= self.usable_cells

    def reserve(self, cells: int) -> None:
        self.reserved_cells += cells

    def has_slots(self, sequences: int) -> bool:
        return sequences <= len(self._free_slots)

    def can_admit(self, cost: JobCost, reused: int = 0) -> bool:
        """Room for ``cost``, of whose prefix ``reused`` cells already exist (prefix cache)."""
        return self.has_slots(cost.sequences) and self.can_reserve(cost.cells - reused)

    def admit(self, cost: JobCost, reused: int = 0) -> list[int]:
        """Reserve the job's new cells; returns one free sequence id per sequence."""
        self.reserved_cells += cost.cells - reused
        return [self._free_slots.pop() for _ in range(cost.sequences)]

    def release(self, cells: int, seq_id: int | None = None) -> None:
        self.reserved_cells -= cells
        if seq_id is not None:
            self._free_slots.append(seq_id)
