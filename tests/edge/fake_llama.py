"""A fake llama.cpp context for driving the :class:`~edge_agent.engine.batcher.Batcher` fast.

It implements what the batcher uses (``DecodeContext``, ``DecodeModel`` and a sampler factory)
with a toy KV cache that checks what llama.cpp would otherwise check or silently get wrong:

- every token's position is the next one of each of its sequences (a shared prefix must carry
  every sequence id; a reused cached prefix must have been ``share_cells``-ed first);
- logits are read only from rows the batch asked logits for, and only until the next decode;
- a batch needs one free cell per token, and :attr:`FakeContext.refuse` makes the next
  decodes report ``NO_KV_SLOT`` (changing nothing), as llama.cpp does when it finds no slot;
  :attr:`FakeContext.fail` makes them fail outright (a negative status).

The "model" reads bytes (token = byte + 2; 0 is end-of-generation, 1 is BOS) and answers
from its own context: after ``say:REPLY|`` it spells REPLY, then ends the generation; with
no ``say:`` it writes ``x`` forever. A sequence's context is read from the cells it holds, so
a sequence missing its prefix cells answers wrongly as well as failing the position check.

Named adapters: :meth:`FakeContext.use_adapter` selects one for the following decodes, and
each decode records it (:attr:`FakeContext.adapters`). Under an adapter the model spells its
reply in upper case, so a request that leaked into another adapter's decode answers wrongly.
Every cell remembers the adapter it was computed under, and a decode asserts that each of its
sequences holds only cells of the adapter selected now: KV computed under one adapter must
never be read under another (a prefix cache shared across adapters would do that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.engine.llama import DECODE_NO_KV_SLOT, DECODE_OK, TokenBatch
from edge_agent.engine.types import SamplingParams

EOG = 0
BOS = 1
N_VOCAB = 258


class FakeModel:
    """A byte-level vocabulary (``DecodeModel``)."""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        return ([BOS] if add_special else []) + [b + 2 for b in text.encode()]

    def piece(self, token: int) -> bytes:
        return bytes([token - 2]) if token >= 2 else b""

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def text(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode(errors="replace")

    def next_token(self, context: list[int], adapter: str | None = None) -> int:
        token = self._base_next_token(context)
        if adapter is not None and token >= 2:
            return ord(chr(token - 2).upper()) + 2 if token - 2 < 128 else token
        return token

    def _base_next_token(self, context: list[int]) -> int:
        text = self.text(context)
        start = text.rfind("say:")
        if start < 0:
            return ord("x") + 2
        reply, bar, written = text[start + 4 :].partition("|")
        if not bar:  # still inside the instruction: nothing sensible to say
            return ord("?") + 2
        if len(written) >= len(reply):
            return EOG
        return reply.encode()[len(written.encode())] + 2


@dataclass(frozen=True)
class Row:
    """One token of a decoded batch, as llama.cpp read it."""

    token: int
    pos: int
    seq_ids: tuple[int, ...]
    logits: bool


@dataclass(eq=False)
class Cell:
    pos: int
    token: int
    seqs: set[int]
    adapter: str | None = None  # the adapter selected when it was computed


@dataclass(eq=False)
class FakeContext:
    """A unified KV cache of ``n_ctx`` cells shared by up to ``n_seq_max`` sequences."""

    n_ctx: int
    n_seq_max: int
    model: FakeModel = field(default_factory=FakeModel)
    # Report NO_KV_SLOT for this many of the next decodes.
    refuse: int = 0
    # Report an error (-1) for this many of the next decodes.
    fail: int = 0
    cells: list[Cell] = field(default_factory=list)
    # Every decode attempted, accepted or not, as the rows llama.cpp received.
    batches: list[list[Row]] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)
    # The adapter selected now, and the one selected for each decode in ``batches``.
    adapter: str | None = None
    adapters: list[str | None] = field(default_factory=list)
    # How often the selection actually changed (what costs llama.cpp something).
    switches: int = 0
    _logit_rows: dict[int, Row] = field(default_factory=dict)

    @property
    def ptr(self) -> Any:
        return self  # what the batcher hands its samplers: they read logits from here

    # -- DecodeContext -----------------------------------------------------------------

    def decode(self, batch: TokenBatch) -> int:
        raw = batch.raw
        rows = [
            Row(
                token=raw.token[i],
                pos=raw.pos[i],
                seq_ids=tuple(raw.seq_id[i][j] for j in range(raw.n_seq_id[i])),
                logits=bool(raw.logits[i]),
            )
            for i in range(batch.n_tokens)
        ]
        self.batches.append(rows)
        self.adapters.append(self.adapter)
        self._logit_rows = {}
        if self.fail > 0:
            self.fail -= 1
            self.accepted.append(False)
            return -1
        if self.refuse > 0 or len(rows) > self.n_ctx - len(self.cells):
            self.refuse = max(0, self.refuse - 1)
            self.accepted.append(False)
            return DECODE_NO_KV_SLOT
        for i, row in enumerate(rows):
            assert row.seq_ids, f"row {i} belongs to no sequence"
            for seq in row.seq_ids:
                assert 0 <= seq < self.n_seq_max, f"sequence id {seq} out of range"
                held = self.positions(seq)
                assert held == list(range(row.pos)), (
                    f"token at {row.pos} for sequence {seq}, which holds {held[-3:]}…"
                )
                foreign = {c.adapter for c in self.cells if seq in c.seqs} - {self.adapter}
                assert not foreign, (
                    f"sequence {seq} decodes under {self.adapter!r} over KV of {foreign}"
                )
            self.cells.append(Cell(row.pos, row.token, set(row.seq_ids), self.adapter))
            if row.logits:
                self._logit_rows[i] = row
        self.accepted.append(True)
        return DECODE_OK

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        assert index in self._logit_rows, f"no logits were computed for batch row {index}"
        row = self._logit_rows[index]
        nxt = self.model.next_token(self.context(row.seq_ids[0], upto=row.pos), self.adapter)
        out = np.zeros(N_VOCAB, dtype=np.float32)
        out[nxt] = 8.0
        return out

    def use_adapter(self, name: str | None) -> None:
        if name != self.adapter:
            self.switches += 1
        self.adapter = name

    def share_cells(self, source: int, target: int, count: int) -> None:
        assert self.positions(source)[:count] == list(range(count)), "source lacks the cells"
        for cell in self.cells:
            if source in cell.seqs and cell.pos < count:
                cell.seqs.add(target)

    def drop_sequence(self, seq: int) -> None:
        for cell in self.cells:
            cell.seqs.discard(seq)
        self.cells = [c for c in self.cells if c.seqs]

    # -- for the tests -----------------------------------------------------------------

    def positions(self, seq: int) -> list[int]:
        return sorted(c.pos for c in self.cells if seq in c.seqs)

    def context(self, seq: int, upto: int) -> list[int]:
        """The tokens ``seq`` holds at positions 0..upto."""
        cells = sorted((c for c in self.cells if seq in c.seqs and c.pos <= upto), key=_pos)
        return [c.token for c in cells]

    def holders(self) -> set[int]:
        """Every sequence id that still holds a cell."""
        return {s for c in self.cells for s in c.seqs}


def _pos(cell: Cell) -> int:
    return cell.pos


@dataclass(eq=False)
class FakeSampler:
    """Greedy over the fake logits (``TokenSampler``); remembers its parameters."""

    params: SamplingParams
    closed: bool = False

    def sample(self, ctx: Any, index: int) -> int:
        assert not self.closed, "sampled with a closed sampler"
        assert isinstance(ctx, FakeContext), "the batcher must hand the sampler its context"
        return int(np.argmax(ctx.logits(index)))

    def close(self) -> None:
        assert not self.closed, "sampler closed twice"
        self.closed = True


@dataclass
class SamplerFactory:
    """Builds :class:`FakeSampler` s and keeps them, to check that every one was closed."""

    made: list[FakeSampler] = field(default_factory=list)

    def __call__(self, params: SamplingParams) -> FakeSampler:
        sampler = FakeSampler(params)
        self.made.append(sampler)
        return sampler
