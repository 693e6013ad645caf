"""The systems under test, each as ``answer(question) -> Answer``.

- cloud-only: the cloud model writes the whole answer (its own chat endpoint, or the gateway's
  ``pice-cloud`` when only a gateway is given).
- sot-cloud: Skeleton-of-Thought with everything on the cloud: the gateway's own sketch
  prompt, then one concurrent chat request per point with the gateway's own cloud-expansion
  prompt, merged by the gateway's own merger. Same prompts as PICE, so the difference
  measured is where the points are expanded, not how they are asked for.
- pice-progressive / pice-auto: the gateway's ``pice-progressive`` and ``pice`` models.
  pice-progressive is single-candidate PICE: it pins ``pice: {"candidates": 1}`` (the request
  extension, ``pice_gateway.progressive.options``) whatever the gateway's ensemble setting;
  pice-auto runs with the gateway's own settings.
- pice-ensemble: ``pice-progressive`` with ``pice: {"candidates": k}`` (k =
  ``Endpoints.ensemble_candidates``), the ensemble of edge candidates; side by side with
  pice-progressive it measures what the ensemble adds (judged against cloud-only, as every
  candidate mode is, and latency on the same questions).
- fleet-direct: the cloud and every edge model answering whole questions, each request sent
  to the server with the fewest outstanding (:mod:`pice_bench.fleet`): the same hardware as
  PICE without the progressive split, a fair throughput baseline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from pice.openai_protocol import ChatMessage
from pice_bench.client import OnDelta, StreamResult, chat_body, stream_chat
from pice_bench.fleet import Backend, LeastOutstanding
from pice_bench.load import AnswerFn
from pice_bench.questions import Question
from pice_bench.records import Answer, Mode, Tokens
from pice_gateway.progressive.expand_prompt import EchoStripper, cloud_expansion_messages
from pice_gateway.progressive.merge import Merger
from pice_gateway.progressive.sketch import DirectText, PointFound, SketchParser, sketch_messages
from pice_gateway.settings import ProgressiveSettings


@dataclass(frozen=True)
class Endpoints:
    """Where the systems under test answer; URLs are OpenAI base URLs ending in ``/v1``."""

    gateway_url: str | None
    cloud_url: str | None
    cloud_model: str
    api_key: str | None = None
    cloud_api_key: str | None = None
    # Model names the gateway serves (its defaults).
    progressive_model: str = "pice-progressive"
    auto_model: str = "pice"
    cloud_via_gateway_model: str = "pice-cloud"
    # Candidates per point pice-ensemble asks for (pice-progressive asks for 1).
    ensemble_candidates: int = 3
    # The model servers fleet-direct balances over (empty: the mode is not available).
    fleet: tuple[Backend, ...] = ()


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _question_messages(question: Question) -> list[dict[str, str]]:
    return [{"role": "user", "content": question.question}]


def answer_from_stream(result: StreamResult, tokens: Tokens) -> Answer:
    return Answer(
        text=result.text,
        latency_s=result.latency_s,
        ttft_s=result.ttft_s,
        tokens=tokens,
        finish_reason=result.finish_reason,
        error=result.error,
    )


def answer_from_gateway(result: StreamResult) -> Answer:
    """An answer from the gateway, split into cloud and edge tokens by its ``pice`` report."""
    ext = result.extension or {}
    cloud = ext.get("cloud_usage") or {}
    edge = ext.get("edge_usage") or {}
    if ext:
        tokens = Tokens(
            cloud_prompt=int(cloud.get("prompt_tokens") or 0),
            cloud_completion=int(cloud.get("completion_tokens") or 0),
            edge_prompt=int(edge.get("prompt_tokens") or 0),
            edge_completion=int(edge.get("completion_tokens") or 0),
        )
    else:  # no report (a plain OpenAI server): all tokens are the cloud's
        tokens = Tokens(
            cloud_prompt=result.prompt_tokens, cloud_completion=result.completion_tokens
        )
    answer = answer_from_stream(result, tokens)
    answer.extension = ext or None
    mode, reason = ext.get("mode"), ext.get("reason")
    answer.served_mode = f"{mode}:{reason}" if mode and reason else mode
    answer.points = [
        str(p.get("title", "")) for p in ext.get("points") or [] if isinstance(p, dict)
    ]
    if not answer.error and result.chunks == 0:
        answer.error = "empty stream"
    return answer


class Systems:
    """Builds each mode's answer function over one shared HTTP client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Endpoints,
        *,
        max_tokens: int,
        progressive: ProgressiveSettings | None = None,
    ) -> None:
        self._client = client
        self._ep = endpoints
        self._max_tokens = max_tokens
        # The gateway's defaults: the SoT baseline budgets its sketch and points the same way.
        self._knobs = progressive or ProgressiveSettings()
        self._balancer = LeastOutstanding(len(endpoints.fleet)) if endpoints.fleet else None

    @property
    def knobs(self) -> ProgressiveSettings:
        return self._knobs

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def available(self) -> list[Mode]:
        modes = []
        if self._ep.cloud_url or self._ep.gateway_url:
            modes.append(Mode.CLOUD)
        if self._ep.cloud_url:
            modes.append(Mode.SOT)
        if self._ep.gateway_url:
            modes += [Mode.PICE, Mode.PICE_AUTO, Mode.PICE_ENSEMBLE]
        if self._ep.fleet:
            modes.append(Mode.FLEET)
        return modes

    def answer_fn(self, mode: Mode) -> AnswerFn:
        if mode is Mode.CLOUD:
            return self.cloud_only
        if mode is Mode.SOT:
            return self.sot_cloud
        if mode is Mode.FLEET:
            return self.fleet_direct
        if mode is Mode.PICE_AUTO:
            return lambda q: self.via_gateway(self._ep.auto_model, q)
        k = self._ep.ensemble_candidates if mode is Mode.PICE_ENSEMBLE else 1
        extension = {"pice": {"candidates": k}}
        return lambda q: self.via_gateway(self._ep.progressive_model, q, extra=extension)

    # -- modes -------------------------------------------------------------------------------

    async def cloud_only(self, question: Question) -> Answer:
        if self._ep.cloud_url is None:
            return await self.via_gateway(self._ep.cloud_via_gateway_model, question)
        result = await stream_chat(
            self._client,
            self._ep.cloud_url.rstrip("/") + "/chat/completions",
            chat_body(
                self._ep.cloud_model, _question_messages(question), max_tokens=self._max_tokens
            ),
            headers=_headers(self._ep.cloud_api_key),
        )
        answer = answer_from_stream(
            result,
            Tokens(cloud_prompt=result.prompt_tokens, cloud_completion=result.completion_tokens),
        )
        answer.served_mode = "cloud"
        return answer

    async def fleet_direct(self, question: Question) -> Answer:
        assert self._balancer is not None
        index = self._balancer.acquire()
        backend = self._ep.fleet[index]
        try:
            result = await stream_chat(
                self._client,
                backend.base_url.rstrip("/") + "/chat/completions",
                chat_body(backend.model, _question_messages(question), max_tokens=self._max_tokens),
                headers=_headers(backend.api_key),
            )
        finally:
            self._balancer.release(index)
        if backend.is_cloud:
            tokens = Tokens(
                cloud_prompt=result.prompt_tokens, cloud_completion=result.completion_tokens
            )
        else:
            tokens = Tokens(
                edge_prompt=result.prompt_tokens, edge_completion=result.completion_tokens
            )
        answer = answer_from_stream(result, tokens)
        answer.served_mode = f"fleet:{backend.name}"
        return answer

    async def via_gateway(
        self, model: str, question: Question, extra: dict[str, Any] | None = None
    ) -> Answer:
        assert self._ep.gateway_url is not None
        result = await stream_chat(
            self._client,
            self._ep.gateway_url.rstrip("/") + "/chat/completions",
            chat_body(
                model, _question_messages(question), max_tokens=self._max_tokens, extra=extra
            ),
            headers=_headers(self._ep.api_key),
        )
        return answer_from_gateway(result)

    async def sot_cloud(self, question: Question) -> Answer:
        assert self._ep.cloud_url is not None
        return await SotRun(self, question).run()

    # -- shared by SotRun --------------------------------------------------------------------

    async def cloud_stream(
        self, messages: list[dict[str, Any]], max_tokens: int, on_text: OnDelta
    ) -> StreamResult:
        assert self._ep.cloud_url is not None
        return await stream_chat(
            self._client,
            self._ep.cloud_url.rstrip("/") + "/chat/completions",
            chat_body(self._ep.cloud_model, messages, max_tokens=max_tokens),
            headers=_headers(self._ep.cloud_api_key),
            on_delta=on_text,
        )


class SotRun:
    """One Skeleton-of-Thought answer on the cloud alone.

    The skeleton streams and is parsed as it arrives (point headers are shown as soon as they
    are named, exactly as the gateway does, so TTFT is comparable); once it is complete every
    point is expanded by its own concurrent cloud request, as in the SoT paper.
    """

    def __init__(self, systems: Systems, question: Question) -> None:
        self._sys = systems
        self._question = question
        self._merger = Merger()
        self._parser = SketchParser(systems.knobs.max_points)
        self._parts: list[str] = []
        self._start = time.perf_counter()
        self._ttft: float | None = None
        self._tokens = Tokens()
        self._error: str | None = None
        self._cut = False

    def _emit(self, text: str) -> None:
        if text:
            if self._ttft is None:
                self._ttft = time.perf_counter() - self._start
            self._parts.append(text)

    def _on_sketch(self, _elapsed: float, text: str) -> bool:
        for event in self._parser.feed(text):
            if isinstance(event, PointFound):
                self._emit(self._merger.add_point(event.index, event.title))
            elif isinstance(event, DirectText):
                self._emit(event.text)
        return not self._parser.ended

    def _account(self, result: StreamResult) -> None:
        # A stream closed early has no usage chunk: count one token per content chunk, as the
        # gateway does for its own early-closed sketches.
        completion = result.completion_tokens if result.usage else len(result.deltas)
        self._tokens += Tokens(cloud_prompt=result.prompt_tokens, cloud_completion=completion)
        if result.error and self._error is None:
            self._error = result.error
        self._cut |= result.finish_reason == "length"

    async def _expand(self, index: int, messages: list[dict[str, Any]], budget: int) -> None:
        echo = EchoStripper(index, self._merger.titles[index])

        def on_text(_elapsed: float, text: str) -> bool:
            if out := echo.feed(text):
                self._emit(self._merger.delta(index, out))
            return True

        result = await self._sys.cloud_stream(
            cloud_expansion_messages(messages, self._merger.titles, index), budget, on_text
        )
        if out := echo.flush():
            self._emit(self._merger.delta(index, out))
        self._account(result)
        self._emit(self._merger.done(index))

    async def run(self) -> Answer:
        knobs = self._sys.knobs
        limit = self._sys.max_tokens
        messages = _question_messages(self._question)
        sketch = await self._sys.cloud_stream(
            sketch_messages(
                [ChatMessage(role="user", content=self._question.question)], allow_direct=False
            ),
            min(knobs.sketch_max_tokens, limit),
            self._on_sketch,
        )
        for event in self._parser.close():
            if isinstance(event, PointFound):
                self._emit(self._merger.add_point(event.index, event.title))
            elif isinstance(event, DirectText):
                self._emit(event.text)
        self._account(sketch)
        titles = list(self._merger.titles)
        if self._parser.is_outline and self._error is None:
            self._emit(self._merger.close_sketch())
            budget = min(knobs.expansion_max_tokens, limit)
            await asyncio.gather(*(self._expand(i, messages, budget) for i in range(len(titles))))
        return Answer(
            text="".join(self._parts),
            latency_s=time.perf_counter() - self._start,
            ttft_s=self._ttft,
            tokens=self._tokens,
            points=titles,
            served_mode="sot:outline" if titles else "sot:direct",
            finish_reason="error" if self._error else "length" if self._cut else "stop",
            error=self._error,
        )
