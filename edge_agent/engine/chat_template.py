"""Render a conversation with the chat template stored in the GGUF itself.

Any instruct model works without a hand-written template: the Jinja template in
``tokenizer.chat_template`` is rendered with llama-cpp-python's own Jinja2 formatter, the way
transformers renders it. A base model without a template (Gemma 3 270M) gets a plain
"User:/Assistant:" transcript instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

TEMPLATE_KEY = "tokenizer.chat_template"


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    # An assistant turn's tool calls ({"id", "type", "function": {"name", "arguments"}}),
    # their arguments as objects (what chat templates write out with ``tojson``).
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    # True when the tokenizer should add BOS itself (the template did not write one).
    add_special: bool


class _ModelMeta(Protocol):
    def meta(self, key: str) -> str | None: ...
    def bos(self) -> int: ...
    def eos(self) -> int: ...
    def token_text(self, token: int) -> str: ...


class ChatRenderer:
    """Turns messages into the prompt text that opens the assistant's turn."""

    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        self.template = template
        self._formatter: Any = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=eos_token,
                bos_token=bos_token,
                add_generation_prompt=True,
            )

    @classmethod
    def from_model(cls, model: _ModelMeta) -> ChatRenderer:
        def token(t: int) -> str:
            return model.token_text(t) if t >= 0 else ""

        template = model.meta(TEMPLATE_KEY)
        if not template:
            logger.info("The model has no chat template; using a plain User/Assistant format")
        return cls(template, bos_token=token(model.bos()), eos_token=token(model.eos()))

    @property
    def has_template(self) -> bool:
        return self._formatter is not None

    def render(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()
    ) -> RenderedPrompt:
        """The prompt; ``tools`` (OpenAI tool objects) go to the template's ``tools``."""
        if self._formatter is None:
            return RenderedPrompt(_plain_transcript(messages), add_special=True)
        payload = [_payload(m) for m in messages]
        text: str = self._formatter(messages=payload, tools=list(tools) or None).prompt
        return RenderedPrompt(text, add_special=False)


def _payload(message: Message) -> dict[str, Any]:
    payload: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        payload["tool_calls"] = list(message.tool_calls)
    return payload


def _plain_transcript(messages: Sequence[Message]) -> str:
    names = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{names.get(m.role, m.role.title())}: {m.content.strip()}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"])
