"""Distillation: the teacher (the cloud model) sketches each question and expands each point
(the expander's data), or samples several sketches of it (the sketcher's data).

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
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pice.errors import UpstreamProtocolError
from pice.openai_protocol import ChatMessage
from pice_gateway.progressive.expand_prompt import EchoStripper, cloud_expansion_messages
from pice_gateway.progressive.sketch import FrameText, PointFound, SketchParser, sketch_messages
from pice_tune import sketcher
from pice_tune.dataset import (
    Example,
    Record,
    SketchExample,
    TuneQuestion,
    data_hash,
    write_dataset,
)
from pice_tune.filters import Expansion, duplicate_points, reject_reason
from pice_tune.jsonl import read_rows

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
        return self.sample(messages, max_tokens, temperature=0.0, n=1)[0]

    def sample(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int,
        *,
        temperature: float,
        n: int,
        seed: int | None = None,
    ) -> list[tuple[str, str | None]]:
        """Up to ``n`` (text, finish reason) of one prompt, in one request (``n`` shares the
        prompt's prefill where the server supports it; a server may return fewer)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if n != 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        response = self._client.post(url, json=body)
        response.raise_for_status()
        choices = sorted(response.json()["choices"], key=lambda c: int(c.get("index", 0)))
        return [
            (str(c["message"].get("content") or ""), c.get("finish_reason")) for c in choices[:n]
        ]

    def close(self) -> None:
        self._client.close()


def parse_sketch(text: str, max_points: int = MAX_POINTS, *, cut: bool = False) -> list[str]:
    """The outline's titles as the gateway's parser reads them; ``[]`` if not an outline.

    ``cut``: the stream ended at the token cap (the parser then drops a last, unfinished line).
    """
    parser = SketchParser(max_points)
    parser.feed(text)
    parser.close(cut=cut)
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
    """The teacher's raw answers by question (a question whose line was cut is asked again)."""
    return {str(row["question_id"]): row for row in read_rows(path)}


@dataclass(frozen=True)
class SketchSampling:
    """How the sketcher's data asks the teacher: ``samples`` outlines per question, the first
    greedy (the teacher's own best guess, and the baseline the choice is measured against),
    the rest at ``temperature`` in one request with ``seed`` (the embedded cloud gives its
    i-th sequence ``seed + i``; vLLM and OpenAI take the seed per request)."""

    samples: int = 4
    temperature: float = 0.7
    seed: int = 0
    max_tokens: int = 96
    # The framed prompt (``progressive.frame``: opening line, outline, closing sentence).
    frame: bool = False


# A framed sketch's token budget: the gateway's own (``progressive.sketch_max_tokens``), since
# the opening and closing add ~40 tokens to an outline's ~50.
FRAMED_MAX_TOKENS = 160

# The parser's cap for sampled sketches: above the gateway's 8, so an outline of 9+ points is
# seen as such and dropped (too_many_points) instead of silently cut to its first 8.
SAMPLE_PARSE_CAP = 16


def question_seed(base: int, question_id: str) -> int:
    """A per-question seed, stable across runs and machines (not Python's salted hash)."""
    return (base * 1_000_003 + zlib.crc32(question_id.encode())) & 0x7FFFFFFF


def sample_sketches(
    teacher: Teacher, question: TuneQuestion, sampling: SketchSampling
) -> dict[str, Any]:
    """The teacher's raw sampled sketches of one question (the resumable unit). The greedy
    sample is asked alone and records its wall time (``seconds``: how long one sketch takes
    this teacher, for ``benchmarks/sketch_eval.py``)."""
    user = [ChatMessage(role="user", content=question.question)]
    messages = sketch_messages(user, allow_direct=False, frame=sampling.frame)
    started = time.monotonic()
    text, finish = teacher.complete(messages, sampling.max_tokens)
    samples: list[dict[str, Any]] = [
        {
            "text": text,
            "finish_reason": finish,
            "temperature": 0.0,
            "seed": None,
            "seconds": round(time.monotonic() - started, 3),
        }
    ]
    seed = question_seed(sampling.seed, question.id)
    while len(samples) < sampling.samples:
        # A server that ignores n returns one choice: ask again for the rest, seed moved on.
        at = seed + len(samples) - 1
        got = teacher.sample(
            messages,
            sampling.max_tokens,
            temperature=sampling.temperature,
            n=sampling.samples - len(samples),
            seed=at,
        )
        if not got:
            raise UpstreamProtocolError(f"the teacher returned no choices for {question.id}")
        for i, (text, finish) in enumerate(got):
            samples.append(
                {
                    "text": text,
                    "finish_reason": finish,
                    "temperature": sampling.temperature,
                    "seed": at + i,
                }
            )
    return {
        "question_id": question.id,
        "samples": samples,
        "teacher": teacher.config.model,
        "frame": sampling.frame,
    }


def read_sample(question: str, sample: Mapping[str, Any], *, frame: bool) -> sketcher.SketchSample:
    """One raw sample as the gateway's parser reads it (framed or not), for the filters."""
    parser = SketchParser(SAMPLE_PARSE_CAP, frame=frame)
    finish = sample.get("finish_reason")
    events = [*parser.feed(str(sample["text"])), *parser.close(cut=finish == "length")]
    frames = [e for e in events if isinstance(e, FrameText)]
    return sketcher.SketchSample(
        question=question,
        points=tuple(parser.points) if parser.is_outline else (),
        finish_reason=finish,
        framed=frame,
        opening=next((e.text for e in frames if not e.closing), None),
        closing=next((e.text for e in frames if e.closing), None),
        sections=any(isinstance(e, PointFound) and e.section is not None for e in events),
    )


@dataclass
class SketchStats:
    """Greedy vs chosen outlines, for the manifest: does the choice make sketches briefer?"""

    greedy: list[tuple[int, int]]  # (points, title words) of each greedy outline
    chosen: list[tuple[int, int]]
    chosen_greedy: int = 0

    def to_json(self) -> dict[str, Any]:
        def summary(rows: list[tuple[int, int]]) -> dict[str, Any]:
            points = sum(p for p, _ in rows)
            title_words = sum(w for _, w in rows)
            return {
                "outlines": len(rows),
                "mean_points": round(points / len(rows), 2) if rows else None,
                "mean_words_per_title": round(title_words / points, 2) if points else None,
                "mean_title_words_per_outline": round(title_words / len(rows), 2) if rows else None,
            }

        return {
            "greedy": summary(self.greedy),
            "chosen": summary(self.chosen),
            "chosen_is_greedy": self.chosen_greedy,
        }


def select_sketch(
    question: TuneQuestion, raw: dict[str, Any], samples: int, stats: SketchStats
) -> tuple[SketchExample | None, Counter[str]]:
    """The chosen outline of one question's raw samples, and the reasons for the drops."""
    dropped: Counter[str] = Counter()
    frame = bool(raw.get("frame", False))
    parsed = [read_sample(question.question, s, frame=frame) for s in raw["samples"][:samples]]
    if parsed and parsed[0].points:
        stats.greedy.append((len(parsed[0].points), sketcher.title_words(parsed[0].points)))
    reasons = [sketcher.reject_reason(sample) for sample in parsed]
    dupes = sketcher.duplicate_samples(parsed, {i for i, r in enumerate(reasons) if r})
    kept = []
    for i, reason in enumerate(reasons):
        reason = reason or ("duplicate" if i in dupes else None)
        if reason is not None:
            dropped[reason] += 1
        else:
            kept.append(i)
    choice = sketcher.choose(parsed, kept)
    if choice is None:
        dropped["question_without_sketch"] += 1
        return None, dropped
    chosen = parsed[choice.index]
    points = chosen.points
    stats.chosen.append((len(points), sketcher.title_words(points)))
    stats.chosen_greedy += choice.index == 0
    example = SketchExample(
        question_id=question.id,
        question=question.question,
        points=points,
        teacher=str(raw["teacher"]),
        sample=choice.index,
        agreement=round(choice.f1, 4),
        opening=chosen.opening,
        closing=chosen.closing,
    )
    return example, dropped


def ask_all(
    questions: Sequence[TuneQuestion],
    out: Path,
    ask: Callable[[TuneQuestion], dict[str, Any]],
    usable: Callable[[dict[str, Any]], bool],
    describe: Callable[[dict[str, Any]], str],
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Every question's raw teacher output, from ``<out>.raw.jsonl`` where it is (and
    ``usable``), else asked now and appended there as soon as it is answered."""
    cache_path = raw_cache_path(out)
    cache = {k: v for k, v in load_raw_cache(cache_path).items() if usable(v)}
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with cache_path.open("a") as cache_file:
        for n, question in enumerate(questions, start=1):
            if question.id in cache:
                continue
            raw = ask(question)
            cache[question.id] = raw
            cache_file.write(json.dumps(raw) + "\n")
            cache_file.flush()
            progress(
                f"[{n}/{len(questions)}] {question.id}: {describe(raw)} "
                f"({time.monotonic() - started:.0f} s)"
            )
    return cache


def write_records(
    out: Path,
    records: Sequence[Record],
    dropped: Counter[str],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    result = write_dataset(out, records, {**manifest, "dropped": dict(sorted(dropped.items()))})
    assert result["data_sha256"] == data_hash(records)
    return result


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
    cache = ask_all(
        train,
        out,
        lambda q: distil_question(teacher, q),
        lambda raw: "titles" in raw,
        lambda raw: f"{len(raw['titles'])} points",
        progress,
    )
    examples: list[Example] = []
    dropped: Counter[str] = Counter()
    for question in train:
        kept, why = filter_raw(question, cache[question.id])
        examples.extend(kept)
        dropped.update(why)
    return write_records(out, examples, dropped, {**manifest, "questions": len(train)})


def build_sketch_dataset(
    teacher: Teacher,
    questions: Sequence[TuneQuestion],
    out: Path,
    *,
    sampling: SketchSampling,
    manifest: dict[str, Any],
    progress: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """The sketcher's dataset: one chosen outline per training question (dev never asked).

    Resumable like :func:`build_dataset`: a question whose cached samples number at least
    ``sampling.samples`` is not asked again (the first that many are used).
    """
    train = [q for q in questions if q.split == "train"]
    started = time.monotonic()
    cache = ask_all(
        train,
        out,
        lambda q: sample_sketches(teacher, q, sampling),
        # Samples of the other prompt (framed or not) are asked again.
        lambda raw: (
            len(raw.get("samples", ())) >= sampling.samples
            and bool(raw.get("frame", False)) == sampling.frame
        ),
        lambda raw: f"{len(raw['samples'])} sketches",
        progress,
    )
    records: list[SketchExample] = []
    dropped: Counter[str] = Counter()
    stats = SketchStats(greedy=[], chosen=[])
    for question in train:
        example, why = select_sketch(question, cache[question.id], sampling.samples, stats)
        if example is not None:
            records.append(example)
        dropped.update(why)
    return write_records(
        out,
        records,
        dropped,
        {
            **manifest,
            "role": "sketcher",
            "questions": len(train),
            "sampling": {
                "samples": sampling.samples,
                "temperature": sampling.temperature,
                "seed": sampling.seed,
                "max_tokens": sampling.max_tokens,
                "frame": sampling.frame,
                "first": "greedy",
            },
            "samples_total": len(train) * sampling.samples,
            "samples_kept": len(train) * sampling.samples
            - sum(v for k, v in dropped.items() if k != "question_without_sketch"),
            "sketch_stats": stats.to_json(),
            "ask_seconds_this_run": round(time.monotonic() - started, 1),
        },
    )
