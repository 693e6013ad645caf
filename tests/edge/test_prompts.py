"""The expansion prompt and chat rendering, without loading a model."""

from __future__ import annotations

from edge_agent.engine.chat_template import ChatRenderer, Message
from edge_agent.prompts import (
    BODY_MAX_WORDS,
    INSTRUCTION,
    SYSTEM_PROMPT,
    expansion_messages,
    instruction,
    outline,
    point_stops,
    point_suffix,
    system_prompt,
)

SKETCH = ["Keep a schedule", " Limit caffeine "]


def test_outline_numbers_every_point() -> None:
    assert outline(SKETCH) == "1. Keep a schedule\n2. Limit caffeine"


def test_prefix_holds_question_and_whole_outline_and_suffix_opens_the_point() -> None:
    messages = expansion_messages("How to sleep?", SKETCH, [Message("user", "earlier")])
    assert [m.role for m in messages] == ["system", "user", "user"]
    assert "How to sleep?" in messages[-1].content
    assert "2. Limit caffeine" in messages[-1].content
    assert "one or two" in messages[0].content
    assert point_suffix(1, " Limit caffeine ") == "2. **Limit caffeine**:"


def test_point_stops_add_the_next_number() -> None:
    assert point_stops(0, ["\n"]) == ("\n", "\n2.")
    assert point_stops(4, []) == ("\n6.",)


def test_model_without_template_gets_a_plain_transcript() -> None:
    renderer = ChatRenderer(None, bos_token="<s>", eos_token="</s>")
    prompt = renderer.render([Message("system", "Be brief."), Message("user", "Hi")])
    assert prompt.text == "System: Be brief.\n\nUser: Hi\n\nAssistant:"
    assert prompt.add_special  # the tokenizer adds BOS itself


def test_gguf_template_is_rendered_with_jinja() -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    renderer = ChatRenderer(template, bos_token="<bos>", eos_token="</s>")
    prompt = renderer.render([Message("user", "Hi")])
    assert prompt.text == "<bos><user>Hi</s><assistant>"
    assert not prompt.add_special


def test_the_default_prompt_asks_for_the_fine_tuning_datas_length() -> None:
    assert system_prompt() == SYSTEM_PROMPT
    assert f"at most {BODY_MAX_WORDS} words" in SYSTEM_PROMPT
    assert "one or two short sentences" in SYSTEM_PROMPT
    assert "one or two short, specific sentences" in INSTRUCTION
    assert expansion_messages("q", SKETCH)[0].content == SYSTEM_PROMPT


def test_longer_bodies_ask_for_more_sentences_and_shorter_ones_keep_two() -> None:
    system, user = expansion_messages("q", SKETCH, words=80)
    assert "(at most 80 words)" in system.content
    assert "two to four sentences" in system.content
    assert "two to four specific sentences" in user.content
    assert "two to three sentences" in system_prompt(50)
    assert "two to ten sentences" in system_prompt(200), "the count is capped"
    assert "one or two short sentences (at most 20 words)" in system_prompt(20)
    assert instruction(20) == INSTRUCTION
