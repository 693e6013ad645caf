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

# Prompts whose limit allows more than two short sentences ask for up to one sentence per
# this many words.
_WORDS_PER_SENTENCE = 20
_NUMBERS = ("three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _sentences(words: int, *, specific: bool) -> str:
    """ "one or two short sentences" within the default limit, else "two to N sentences"."""
    if words <= BODY_MAX_WORDS:
        return f"one or two short{', specific' if specific else ''} sentences"
    most = min(max(3, round(words / _WORDS_PER_SENTENCE)), 3 + len(_NUMBERS) - 1)
    return f"two to {_NUMBERS[most - 3]}{' specific' if specific else ''} sentences"


def system_prompt(words: int = BODY_MAX_WORDS) -> str:
    """The system instruction asking for bodies of at most ``words`` words."""
    length = f"{_sentences(words, specific=False)} (at most {words} words)"
    return (
        "You are a helpful expert. The user gives a question and a numbered outline of the "
        "answer. Your reply expands exactly ONE point of the outline: the point your reply "
        f"starts with. Write {length} on a single line, "
        "about that point only. Do not repeat the point's title and do not mention the other "
        "points."
    )


def instruction(words: int = BODY_MAX_WORDS) -> str:
    """The user turn's closing instruction, matching :func:`system_prompt`."""
    return (
        "Expand only the point your reply starts with, in "
        f"{_sentences(words, specific=True)} that answer the question."
    )


SYSTEM_PROMPT = system_prompt()
INSTRUCTION = instruction()


def outline(sketch: Sequence[str]) -> str:
    return "\n".join(f"{i}. {title.strip()}" for i, title in enumerate(sketch, start=1))


def expansion_messages(
    question: str,
    sketch: Sequence[str],
    history: Sequence[Message] = (),
    *,
    words: int = BODY_MAX_WORDS,
) -> list[Message]:
    """The conversation whose rendering is the shared prefix.

    ``history`` holds earlier turns of a conversation (system messages excluded), so a
    follow-up question is expanded in its context. ``words`` is the body's length the prompt
    asks for (``ExpandRequest.point_words``); the default prompt is the one the bundled
    models and the fine-tuning data use.
    """
    user = f"Question: {question.strip()}\n\nOutline:\n{outline(sketch)}\n\n{instruction(words)}"
    return [Message("system", system_prompt(words)), *history, Message("user", user)]


def point_suffix(index: int, title: str) -> str:
    """The assistant turn opened at point ``index`` (0-based); the body follows the colon."""
    return f"{index + 1}. **{title.strip()}**:"


def point_stops(index: int, extra: Sequence[str]) -> tuple[str, ...]:
    """Stop strings of point ``index``: the request's own plus "newline, next number"."""
    return (*extra, f"\n{index + 2}.")
