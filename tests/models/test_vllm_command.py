"""The vLLM command line PICE builds: tool calling enabled where the model's parser is known."""

from __future__ import annotations

import json
from pathlib import Path

from pice.cloud.vllm import VllmServer, tool_call_parser


def server(tmp_path: Path, parser: str | None) -> VllmServer:
    return VllmServer(
        venv=tmp_path / "venv",
        model_dir=tmp_path / "model",
        served_model_name="m",
        port=8100,
        tool_call_parser=parser,
    )


def test_a_qwen2_checkpoint_gets_the_hermes_parser(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert tool_call_parser(tmp_path) == "hermes"


def test_an_unknown_or_unreadable_checkpoint_gets_none(tmp_path: Path) -> None:
    assert tool_call_parser(tmp_path) is None  # no config.json
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_oss"}))
    assert tool_call_parser(tmp_path) is None
    (tmp_path / "config.json").write_text("[1, 2")
    assert tool_call_parser(tmp_path) is None


def test_the_parser_turns_on_auto_tool_choice(tmp_path: Path) -> None:
    argv = server(tmp_path, "hermes").argv()
    at = argv.index("--tool-call-parser")
    assert argv[at + 1] == "hermes"
    assert "--enable-auto-tool-choice" in argv
    plain = server(tmp_path, None).argv()
    assert "--enable-auto-tool-choice" not in plain
    assert "--tool-call-parser" not in plain
