"""The tuning data: questions in, a versioned JSONL of filtered teacher outputs out.

Every line of the dataset is one record, serialised canonically (sorted keys, no spaces), so
the data hash is the sha256 of the file's bytes and a reader can check it. A manifest beside it
(``<file>.manifest.json``) records the schema version, the hash, the teacher, the questions
file's hash and what the filters dropped.

Three kinds of record share schema 1: an :class:`Example` (a kept expansion, for the edge's
expander; its lines carry no ``kind``, as every file written before the sketcher did), a
:class:`SketchExample` (``"kind": "sketch"``: the outline chosen for a question, for the
cloud's sketcher) and a :class:`PairExample` (``"kind": "pair"``: two of the edge's own
candidates for a point, the one the ensemble would show and one it would not, for a
preference round). :func:`training_record` renders each with the prompt it answers at serve
time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge_agent.prompts import expansion_messages, point_suffix
from pice.models.provision import hash_file
from pice.openai_protocol import ChatMessage
from pice_gateway.progressive.sketch import sketch_messages

SCHEMA_VERSION = 1
SKETCH_KIND = "sketch"
PAIR_KIND = "pair"
QUESTIONS_RESOURCE = "questions.jsonl"


@dataclass(frozen=True)
class TuneQuestion:
    id: str
    category: str
    question: str
    # "train" or "dev": dev questions are never written into a training file.
    split: str


def check_schema(data: Mapping[str, Any]) -> None:
    if data.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"dataset schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")


@dataclass(frozen=True)
class Example:
    """One kept teacher expansion: the edge is taught to write ``body`` for point ``index``."""

    question_id: str
    question: str
    sketch: tuple[str, ...]
    index: int
    body: str
    teacher: str

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, **asdict(self), "sketch": list(self.sketch)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Example:
        check_schema(data)
        return cls(
            question_id=str(data["question_id"]),
            question=str(data["question"]),
            sketch=tuple(str(t) for t in data["sketch"]),
            index=int(data["index"]),
            body=str(data["body"]),
            teacher=str(data["teacher"]),
        )


@dataclass(frozen=True)
class SketchExample:
    """One chosen teacher outline: the sketcher is taught to answer ``question`` with ``points``.

    ``sample`` is the index of the chosen sample among the teacher's (0: the greedy one) and
    ``agreement`` its F1 against the other samples' points (:mod:`pice_tune.sketcher`).
    """

    question_id: str
    question: str
    points: tuple[str, ...]
    teacher: str
    sample: int
    agreement: float
    # A framed sketch's opening line and closing sentence (``progressive.frame``); both None
    # for an outline alone, and then left out of the record (so older files hash the same).
    opening: str | None = None
    closing: str | None = None

    @property
    def framed(self) -> bool:
        return self.opening is not None

    def to_json(self) -> dict[str, Any]:
        record = {
            "schema": SCHEMA_VERSION,
            "kind": SKETCH_KIND,
            **asdict(self),
            "points": list(self.points),
        }
        return {k: v for k, v in record.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SketchExample:
        check_schema(data)
        return cls(
            question_id=str(data["question_id"]),
            question=str(data["question"]),
            points=tuple(str(p) for p in data["points"]),
            teacher=str(data["teacher"]),
            sample=int(data["sample"]),
            agreement=float(data["agreement"]),
            opening=None if data.get("opening") is None else str(data["opening"]),
            closing=None if data.get("closing") is None else str(data["closing"]),
        )

    def outline(self) -> str:
        """The outline as the sketch prompt's example writes it and the gateway's parser reads
        it back point for point."""
        return "\n".join(f"{i}. {title}" for i, title in enumerate(self.points, start=1))

    def completion(self) -> str:
        """What the sketcher learns to write: the outline, framed as the framed prompt's
        example is (opening line, list, closing sentence) when the sketch has a frame."""
        if not self.framed:
            return self.outline()
        return f"{self.opening}\n{self.outline()}\n{self.closing or ''}".rstrip("\n")


@dataclass(frozen=True)
class PairExample:
    """Two candidates the edge wrote for point ``index``: ``chosen`` (what the ensemble would
    show) over ``rejected``; ``why`` names what rejected it (a data filter's reason, or
    ``"score"`` when only the ensemble's score tells them apart)."""

    question_id: str
    question: str
    sketch: tuple[str, ...]
    index: int
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    why: str
    model: str

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": PAIR_KIND,
            **asdict(self),
            "sketch": list(self.sketch),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairExample:
        check_schema(data)
        return cls(
            question_id=str(data["question_id"]),
            question=str(data["question"]),
            sketch=tuple(str(t) for t in data["sketch"]),
            index=int(data["index"]),
            chosen=str(data["chosen"]),
            rejected=str(data["rejected"]),
            chosen_score=float(data["chosen_score"]),
            rejected_score=float(data["rejected_score"]),
            why=str(data["why"]),
            model=str(data["model"]),
        )


Record = Example | SketchExample | PairExample


def record_from_json(data: Mapping[str, Any]) -> Record:
    kind = data.get("kind")
    if kind is None:
        return Example.from_json(data)
    if kind == SKETCH_KIND:
        return SketchExample.from_json(data)
    if kind == PAIR_KIND:
        return PairExample.from_json(data)
    raise ValueError(f"unknown record kind {kind!r}")


def canonical_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def data_hash(examples: Iterable[Record]) -> str:
    """sha256 of the dataset's canonical serialisation: equal to the written file's hash."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(canonical_line(example.to_json()).encode())
    return digest.hexdigest()


def bundled_questions_path() -> Path:
    return Path(str(resources.files("pice_tune") / "data" / QUESTIONS_RESOURCE))


def load_questions(path: Path | None = None) -> list[TuneQuestion]:
    source = path or bundled_questions_path()
    out = []
    for line in source.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(
                TuneQuestion(
                    id=str(row["id"]),
                    category=str(row.get("category", "")),
                    question=str(row["question"]),
                    split=str(row.get("split", "train")),
                )
            )
    return out


def write_dataset(
    path: Path, examples: Sequence[Record], manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the JSONL and its manifest (through temporary files); returns the manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for example in examples:
            f.write(canonical_line(example.to_json()))
    full = {
        "schema": SCHEMA_VERSION,
        "data_sha256": data_hash(examples),
        "examples": len(examples),
        **manifest,
    }
    tmp.rename(path)
    manifest_path(path).write_text(json.dumps(full, indent=2) + "\n")
    return full


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def read_dataset(path: Path) -> tuple[list[Record], str]:
    """The records and the file's hash; refuses a file whose manifest names another hash."""
    examples = [
        record_from_json(json.loads(line)) for line in path.read_text().splitlines() if line
    ]
    digest = hash_file(path)
    mpath = manifest_path(path)
    if mpath.exists():
        recorded = json.loads(mpath.read_text()).get("data_sha256")
        if recorded != digest:
            raise ValueError(f"{path} was changed after it was written (hash {digest[:12]})")
    return examples, digest


def training_record(example: Record) -> dict[str, Any]:
    """What the trainer sees (``messages``, ``prefix``, ``completion``, ``end_turn``; a pair:
    ``chosen`` and ``rejected`` in place of ``completion``).

    An expansion: the edge's own expansion prompt, opened at the point; the body ends with the
    newline the edge stops at, so the model learns to stop there. A sketch: the gateway's
    outline prompt (no direct answers; the framed one for a framed sketch) and the outline as
    the completion (between its opening line and closing sentence when framed); ``end_turn``
    asks the trainer to append the chat template's end of turn (Qwen's ``<|im_end|>``), which
    is what ends a sketch at serve time (llama.cpp and vLLM stop at that token), so the model
    learns to write nothing after the list (or the closing).
    """
    if isinstance(example, SketchExample):
        user = [ChatMessage(role="user", content=example.question)]
        return {
            "messages": sketch_messages(user, allow_direct=False, frame=example.framed),
            "prefix": "",
            "completion": example.completion(),
            "end_turn": True,
        }
    messages = expansion_messages(example.question, example.sketch)
    opened = {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "prefix": point_suffix(example.index, example.sketch[example.index]),
    }
    if isinstance(example, PairExample):
        return {
            **opened,
            "chosen": body_text(example.chosen),
            "rejected": body_text(example.rejected),
        }
    return {**opened, "completion": body_text(example.body)}


def body_text(body: str) -> str:
    """A body as the edge writes it after ``N. **Title**:``: a space, the text, the newline it
    stops at."""
    return " " + body.strip() + "\n"
