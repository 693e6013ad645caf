"""A tool definition the tool-calling tests offer (edge agent, vLLM, the embedded stack)."""

from __future__ import annotations

from typing import Any

WEATHER_QUESTION = "What is the weather in Paris right now?"

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
