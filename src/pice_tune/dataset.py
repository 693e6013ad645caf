"""The tuning data: questions in, a versioned JSONL of filtered teacher expansions out.

Every line of the dataset is one kept expansion, serialised canonically (sorted keys, no
spaces), so the data hash is the sha256 of the file's bytes and a reader can check it. A
manifest beside it (``<file>.manifest.json``) records the schema version, the hash, the
teacher, the questions file's hash and what the filters dropped.
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

SCHEMA_VERSION = 1
QUESTIONS_RESOURCE = "questions.jsonl"


@dataclass(frozen=True)
class TuneQuestion:
    id: str
    category: str
    question: str
    # "train" or "dev": dev questions are never written into a training file.
    split: str


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
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"dataset schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        return cls(
            question_id=str(data["question_id"]),
            question=str(data["question"]),
            sketch=tuple(str(t) for t in data["sketch"]),
            index=int(data["index"]),
            body=str(data["body"]),
            teacher=str(data["teacher"]),
        )


def canonical_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def data_hash(examples: Iterable[Example]) -> str:
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
    path: Path, examples: Sequence[Example], manifest: Mapping[str, Any]
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


def read_dataset(path: Path) -> tuple[list[Example], str]:
    """The examples and the file's hash; refuses a file whose manifest names another hash."""
    examples = [
        Example.from_json(json.loads(line)) for line in path.read_text().splitlines() if line
    ]
    digest = hash_file(path)
    mpath = manifest_path(path)
    if mpath.exists():
        recorded = json.loads(mpath.read_text()).get("data_sha256")
        if recorded != digest:
            raise ValueError(f"{path} was changed after it was written (hash {digest[:12]})")
    return examples, digest


def training_record(example: Example) -> dict[str, Any]:
    """What the trainer sees: the edge's own expansion prompt, opened at the point.

    The body ends with the newline the edge stops at, so the model learns to stop there.
    """
    messages = expansion_messages(example.question, example.sketch)
    return {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "prefix": point_suffix(example.index, example.sketch[example.index]),
        "completion": " " + example.body.strip() + "\n",
    }
