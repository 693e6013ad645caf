"""Distillation: the teacher (the cloud model) sketches each question and expands each point.

The prompts are the gateway's own: the sketch prompt of
:mod:`pice_gateway.progressive.sketch` (outline only) and the cloud's expansion prompt of
:mod:`pice_gateway.progressive.expand_prompt`, so the targets are what PICE's cloud writes when
it expands a point itself. Raw teacher answers are cached per question in a side file, so an
interrupted run resumes where it stopped; filtering happens after, from that cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pice.openai_protocol import ChatMessage
from pice_gateway.progressive.expand_prompt import EchoStripper, cloud_expansion_messages
from pice_gateway.progressive.sketch import SketchParser, sketch_messages
from pice_tune.dataset import Example, TuneQuestion, data_hash, write_dataset
from pice_tune.filters import Expansion, duplicate_points, reject_reason

logger = logging.getLogger(__name__)

MAX_POINTS = 8


@dataclass(frozen=True)
class TeacherConfig:
    base_url: str  # OpenAI base URL, ending in /v1
    model: str
    api_key: str | None = None
    sketch_max_tokens: int = 160
    expand_max_tokens: int = 120
    timeout_s: float = 300.0


class Teacher:
    """A plain (non-streaming) chat-completions client: greedy, one call at a time."""

    def __init__(self, config: TeacherConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = client or httpx.Client(headers=headers, timeout=config.timeout_s)

    def complete(self, messages: list[dict[str, Any]], max_tokens: int) -> tuple[str, str | None]:
        body = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        response = self._client.post(url, json=body)
        response.raise_for_status()
        choice = response.json()["choices"][0]
        return str(choice["message"].get("content") or ""), choice.get("finish_reason")

    def close(self) -> None:
        self._client.close()


def parse_sketch(text: str) -> list[str]:
    parser = SketchParser(MAX_POINTS)
    parser.feed(text)
    parser.close()
    return list(parser.points) if parser.is_outline else []


def clean_body(text: str, index: int, title: str) -> str:
    """The body as the gateway would stream it: a restated "N. **Title**:" removed."""
    stripper = EchoStripper(index, title)
    return (stripper.feed(text) + stripper.flush()).strip()


def distil_question(teacher: Teacher, question: TuneQuestion) -> dict[str, Any]:
    """The teacher's raw sketch and expansions of one question (the resumable unit)."""
    user = [ChatMessage(role="user", content=question.question)]
    sketch_text, _ = teacher.complete(
        sketch_messages(user, allow_direct=False), teacher.config.sketch_max_tokens
    )
    titles = parse_sketch(sketch_text)
    conversation = [{"role": "user", "content": question.question}]
    expansions = []
    for i in range(len(titles)):
        text, finish = teacher.complete(
            cloud_expansion_messages(conversation, titles, i), teacher.config.expand_max_tokens
        )
        expansions.append({"text": text, "finish_reason": finish})
    return {
        "question_id": question.id,
        "sketch_text": sketch_text,
        "titles": titles,
        "expansions": expansions,
        "teacher": teacher.config.model,
    }


def filter_raw(question: TuneQuestion, raw: dict[str, Any]) -> tuple[list[Example], Counter[str]]:
    """Kept examples of one question's raw teacher output, and the reasons for the drops."""
    titles: list[str] = list(raw["titles"])
    dropped: Counter[str] = Counter()
    if not titles:
        dropped["no_outline"] += 1
        return [], dropped
    bodies = [
        clean_body(e["text"], i, titles[i]) for i, e in enumerate(raw["expansions"][: len(titles)])
    ]
    dupes = duplicate_points(bodies)
    kept = []
    for i, body in enumerate(bodies):
        expansion = Expansion(
            question=question.question,
            titles=tuple(titles),
            index=i,
            body=body,
            finish_reason=raw["expansions"][i].get("finish_reason"),
        )
        reason = "duplicate_point" if i in dupes else reject_reason(expansion)
        if reason is not None:
            dropped[reason] += 1
            continue
        kept.append(
            Example(
                question_id=question.id,
                question=question.question,
                sketch=tuple(titles),
                index=i,
                body=body,
                teacher=str(raw["teacher"]),
            )
        )
    return kept, dropped


def raw_cache_path(out: Path) -> Path:
    return out.with_name(out.name + ".raw.jsonl")


def load_raw_cache(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by an interruption: that question is asked again
            continue
        out[str(row["question_id"])] = row
    return out


def build_dataset(
    teacher: Teacher,
    questions: Sequence[TuneQuestion],
    out: Path,
    *,
    manifest: dict[str, Any],
    progress: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Distil ``questions`` (train split only) into the dataset at ``out``; returns its manifest.

    The teacher's raw answers are appended to ``<out>.raw.jsonl`` as each question finishes,
    and questions found there are not asked again.
    """
    train = [q for q in questions if q.split == "train"]
    cache_path = raw_cache_path(out)
    cache = load_raw_cache(cache_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with cache_path.open("a") as cache_file:
        for n, question in enumerate(train, start=1):
            if question.id in cache:
                continue
            raw = distil_question(teacher, question)
            cache[question.id] = raw
            cache_file.write(json.dumps(raw) + "\n")
            cache_file.flush()
            progress(
                f"[{n}/{len(train)}] {question.id}: {len(raw['titles'])} points "
                f"({time.monotonic() - started:.0f} s)"
            )
    examples: list[Example] = []
    dropped: Counter[str] = Counter()
    for question in train:
        kept, why = filter_raw(question, cache[question.id])
        examples.extend(kept)
        dropped.update(why)
    result = write_dataset(
        out,
        examples,
        {**manifest, "questions": len(train), "dropped": dict(sorted(dropped.items()))},
    )
    assert result["data_sha256"] == data_hash(examples)
    return result
