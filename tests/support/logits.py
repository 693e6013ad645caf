"""llama.cpp's logits over a short text: what tests compare models and adapters by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT = "Water the soil deeply the day before leaving, then group the pots."


def text_logits(path: Path, adapter: Path | None = None, scale: float = 1.0) -> Any:
    """Every position's logits over :data:`TEXT`, with ``adapter`` applied if given."""
    import numpy as np

    from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel, TokenBatch

    model = LlamaModel(path)
    ctx = LlamaContext(model, ContextConfig(256, 256, 1, 2))
    batch = TokenBatch(256, 1)
    try:
        if adapter is not None:
            ctx.set_adapter(model.load_adapter(adapter), scale)
        tokens = model.tokenize(TEXT, add_special=True, parse_special=False)
        for pos, token in enumerate(tokens):
            batch.add(token, pos, (0,), logits=True)
        assert ctx.decode(batch) == 0
        return np.stack([ctx.logits(i).copy() for i in range(len(tokens))])
    finally:
        batch.close()
        ctx.close()
        model.close()
