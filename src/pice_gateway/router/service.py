"""The router as the gateway uses it: loaded in the lifespan, asked once per ``pice`` request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from pice.openai_protocol import ChatMessage
from pice_gateway.router.assets import encoder_id, provision_encoder
from pice_gateway.router.encoder import Encoder, SentenceEncoder
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouteDecision, RouterWeights, route_text
from pice_gateway.settings import RouterSettings


class RequestRouter:
    """Embeds the last user message (in a worker thread) and applies the trained heads: an
    exit head after each of the encoder's early stages, the final head after the last."""

    def __init__(
        self,
        encoder: Encoder,
        weights: RouterWeights,
        threshold: float | None = None,
        *,
        early_exit: bool = True,
    ) -> None:
        self._encoder = encoder
        self.weights = weights
        self.threshold = weights.threshold if threshold is None else threshold
        # The encoder must then be cut at the weights' exit blocks (one stage per exit + 1).
        self.early_exit = early_exit and bool(weights.exits)

    @classmethod
    def load(cls, settings: RouterSettings) -> RequestRouter:
        """Provision the encoder, load the weights (blocking: call it off the event loop)."""
        weights = RouterWeights.load(settings.weights or BUNDLED_WEIGHTS)
        expected = encoder_id()
        if weights.encoder != expected:
            raise ValueError(
                f"router weights {weights.version} were trained on {weights.encoder}, "
                f"not on this encoder ({expected})"
            )
        exits = weights.exit_blocks if settings.early_exit else ()
        encoder = SentenceEncoder(
            provision_encoder(settings.cache_dir, pull=settings.pull, exits=exits)
        )
        # Each ONNX session allocates on its first run: run every stage once, not only as far
        # as an exit would stop.
        encoder.embed("warm-up")
        return cls(encoder, weights, settings.threshold, early_exit=settings.early_exit)

    def decide_sync(self, text: str) -> RouteDecision:
        started = time.perf_counter()
        if self.early_exit:
            decision = self.weights.decide_staged(self._encoder.embed_stages(text), self.threshold)
        else:
            decision = self.weights.decide(self._encoder.embed(text), self.threshold)
        return replace(decision, ms=(time.perf_counter() - started) * 1000.0)

    async def decide(self, messages: Sequence[ChatMessage]) -> RouteDecision:
        return await asyncio.to_thread(self.decide_sync, route_text(messages))
