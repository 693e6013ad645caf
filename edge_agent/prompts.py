"""The expansion prompt: one shared prefix for the whole sketch, one short suffix per point.

The prefix is the chat-templated conversation (system instruction, the question with the full
numbered outline, the assistant header); it is identical for every point, so the engine
prefills it once. Each point's suffix opens the assistant's answer at that point,
``"{n}. **{title}**:"``, and the model writes the body. A 0.5B model otherwise runs on into the
next points: the instruction says "only this point, one or two sentences", and the stop
strings end a body at the newline (and at a newline followed by the next number).
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.engine.chat_template import Message

# The default stop strings are part of the wire protocol (``ExpandRequest.stop``).
from pice.edge_protocol import DEFAULT_STOP as DEFAULT_STOP

# The body's length the prompt asks for; the fine-tuning data holds no longer targets.
BODY_MAX_WORDS = 40

SYSTEM_PROMPT = (
    "You are a helpful expert. The user gives a question and a numbered outline of the answer. "
    "Your reply expands exactly ONE point of the outline: the point your reply starts with. "
    f"Write one or two short sentences (at most {BODY_MAX_WORDS} words) on a single line, "
    "about that point only. Do not repeat the point's title and do not mention the other points."
)

INSTRUCTION = (
    "Expand only the point your reply starts with, in one or two short, specific sentences "
    "that answer the question."
)


def outline(sketch: Sequence[str]) -> str:
    return "\n".join(f"{i}. {title.strip()}" for i, title in enumerate(sketch, start=1))


def expansion_messages(
    question: str, sketch: Sequence[str], history: Sequence[Message] = ()
) -> list[Message]:
    """The conversation whose rendering is the shared prefix.

    ``history`` holds earlier turns of a conversation (system messages excluded), so a
    follow-up question is expanded in its context.
    """
    user = f"Question: {question.strip()}\n\nOutline:\n{outline(sketch)}\n\n{INSTRUCTION}"
    return [Message("system", SYSTEM_PROMPT), *history, Message("user", user)]


def point_suffix(index: int, title: str) -> str:
    """The assistant turn opened at point ``index`` (0-based); the body follows the colon."""
    return f"{index + 1}. **{title.strip()}**:"


def point_stops(index: int, extra: Sequence[str]) -> tuple[str, ...]:
    """Stop strings of point ``index``: the request's own plus "newline, next number"."""
    return (*extra, f"\n{index + 2}.")
