"""The training recipe: every knob that changes the adapter, recorded beside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The edge model's attention projections and MLP: where a LoRA on a small model pays most.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# Knobs added after runs were recorded without them, with the value those runs had.
ADDED_LATER: dict[str, Any] = {"val_share": 0.0}


@dataclass(frozen=True)
class Recipe:
    base_model: str = "qwen2.5-coder-0.5b-instruct"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    lr: float = 2e-4
    max_steps: int = 300
    batch_size: int = 4
    seq_len: int = 512
    targets: tuple[str, ...] = DEFAULT_TARGETS
    seed: int = 0
    # Share of the data's questions held out for a validation loss at every checkpoint (0: none);
    # with it, the adapter is the checkpoint of the lowest validation loss.
    val_share: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}

    def worker_args(self) -> list[str]:
        """The worker's ``train`` flags for this recipe."""
        return [
            *("--rank", str(self.rank), "--alpha", str(self.alpha)),
            *("--dropout", str(self.dropout), "--lr", str(self.lr)),
            *("--max-steps", str(self.max_steps), "--batch-size", str(self.batch_size)),
            *("--seq-len", str(self.seq_len), "--targets", ",".join(self.targets)),
            *("--seed", str(self.seed)),
        ]

    def resumable_from(self, recorded: dict[str, Any]) -> bool:
        """A checkpoint made with ``recorded`` may be continued under this recipe.

        Everything but ``max_steps`` must match: more steps extend a run, anything else would
        mix two different trainings in one adapter.
        """
        mine = self.to_json()
        return all(
            recorded.get(k, ADDED_LATER.get(k)) == v for k, v in mine.items() if k != "max_steps"
        )
