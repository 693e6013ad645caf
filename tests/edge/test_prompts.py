"""The expansion prompt and chat rendering, without loading a model."""

from __future__ import annotations

from edge_agent.engine.chat_template import ChatRenderer, Message
from edge_agent.prompts import expansion_messages, outline, point_stops, point_suffix

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
