"""The sketcher's data: filters over sampled outlines, the choice of one, the dataset it makes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice_gateway.progressive.sketch import (
    SKETCH_SYSTEM_FRAMED,
    SKETCH_SYSTEM_OUTLINE,
    FrameText,
    SketchParser,
    sketch_messages,
)
from pice_tune import sketcher
from pice_tune.dataset import (
    Example,
    SketchExample,
    TuneQuestion,
    read_dataset,
    record_from_json,
    training_record,
    write_dataset,
)
from pice_tune.distill import (
    FRAMED_MAX_TOKENS,
    SketchSampling,
    Teacher,
    TeacherConfig,
    build_sketch_dataset,
    raw_cache_path,
    read_sample,
)
from pice_tune.sketcher import SketchSample

QUESTION = "How can I keep a houseplant alive while travelling for two weeks?"


def sample(*points: str, finish: str | None = "stop") -> SketchSample:
    return SketchSample(question=QUESTION, points=points, finish_reason=finish)


GOOD = sample("Water deeply first", "Move out of sun", "Humidity tray", "Ask a neighbour")


# -- filters ---------------------------------------------------------------------------


def test_the_limits_are_the_outline_prompts_own() -> None:
    assert f"{sketcher.MIN_POINTS} to {sketcher.MAX_POINTS} points" in SKETCH_SYSTEM_OUTLINE
    assert f"2 to {sketcher.TITLE_MAX_WORDS} words each" in SKETCH_SYSTEM_OUTLINE


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (GOOD, None),
        (sample(), "not_outline"),
        (sample("Water deeply", "Less sun", "Humidity tray", finish="length"), "truncated"),
        (sample("Water deeply", "Less sun"), "too_few_points"),
        (sample(*(f"Point number {n}" for n in "abcdefghi")), "too_many_points"),
        (
            sample("Water deeply", "Move it somewhere cool and shady for the trip", "Tray"),
            "long_title",
        ),
        (sample("Keep houseplant alive", "Water deeply", "Less sun"), "restated_question"),
        (sample("Less caffeine", "Water deeply", "Avoid caffeine late"), "overlapping_titles"),
        # The same content words under other light verbs are the same point.
        (
            sample("Wear a hat and sunglasses", "Water", "Bring a hat and sunglasses"),
            "overlapping_titles",
        ),
    ],
)
def test_each_filter_fires_on_its_own_fault(candidate: SketchSample, reason: str | None) -> None:
    assert sketcher.reject_reason(candidate) == reason


def test_shared_topic_words_and_light_verbs_are_not_an_overlap() -> None:
    # "houseplant" is the question's topic; "pack" a light verb: these are different points.
    assert not sketcher.titles_overlap("Houseplant watering", "Houseplant light", QUESTION)
    assert not sketcher.titles_overlap("Pack water", "Pack snacks", QUESTION)
    assert sketcher.titles_overlap("Water the soil", "Soil watering", QUESTION)


def test_a_title_that_borrows_a_word_of_the_question_is_not_a_restatement() -> None:
    assert sketcher.restated_question(sample("Water before travelling", "Less sun", "Tray")) is None


def test_a_repeated_outline_is_a_duplicate_but_its_first_copy_is_not() -> None:
    samples = [
        GOOD,
        sample("Water deeply first", "Move out of sun", "Humidity tray", "Ask a neighbour"),
    ]
    assert sketcher.duplicate_samples([*samples, sample()]) == {1}
    # A first copy a filter dropped does not make the second a duplicate.
    assert sketcher.duplicate_samples(samples, rejected={0}) == set()


# -- the choice ------------------------------------------------------------------------


def test_the_choice_prefers_the_sketch_that_covers_what_the_others_plan() -> None:
    shared = ("Water deeply", "Shade from sun", "Humidity tray")
    samples = [
        sample("Water deeply", "Shade from sun", "Ask a neighbour"),  # misses the tray
        sample(*shared, "Ask a neighbour"),
        sample(*shared),
        sample(*shared, "Group the pots"),
    ]
    choice = sketcher.choose(samples, kept=[0, 1])
    assert choice is not None
    assert choice.index == 1
    assert choice.recall > sketcher.agreement(samples, 0).recall


def test_brevity_breaks_a_tie_in_agreement() -> None:
    samples = [
        sample("Water the soil deeply", "Shade from direct sun", "Humidity tray nearby"),
        sample("Water deeply", "Shade", "Humidity tray"),
        sample("Water", "Shade", "Humidity tray"),
    ]
    # Every sample covers the others' points and the others cover each of its points.
    assert {sketcher.agreement(samples, i).f1 for i in range(3)} == {1.0}
    choice = sketcher.choose(samples, kept=[0, 1, 2])
    assert choice is not None
    assert choice.index == 2  # the fewest title words


def test_padding_does_not_win_the_choice() -> None:
    core = ("Water deeply", "Shade from sun", "Humidity tray")
    samples = [
        sample(*core, "Play music", "Paint the pot", "Name the plant"),  # covers all, pads
        sample(*core),
        sample(*core),
    ]
    choice = sketcher.choose(samples, kept=[0, 1])
    assert choice is not None
    assert choice.index == 1
    assert sketcher.agreement(samples, 0).recall == 1.0


def test_no_kept_sample_means_no_choice() -> None:
    assert sketcher.choose([sample()], kept=[]) is None


# -- records ---------------------------------------------------------------------------


def sketch_example() -> SketchExample:
    return SketchExample(
        question_id="tune-001",
        question=QUESTION,
        points=("Water deeply", "Shade from sun", "Humidity tray"),
        teacher="teach",
        sample=2,
        agreement=0.75,
    )


def test_a_sketch_record_is_the_gateways_outline_prompt_and_parses_back() -> None:
    record = training_record(sketch_example())
    user = [{"role": "user", "content": QUESTION}]
    assert record["messages"][-1] == user[0]
    assert record["messages"][0]["content"] == SKETCH_SYSTEM_OUTLINE
    from pice.openai_protocol import ChatMessage

    assert record["messages"] == sketch_messages(
        [ChatMessage(role="user", content=QUESTION)], allow_direct=False
    )
    assert record["prefix"] == ""
    assert record["completion"] == "1. Water deeply\n2. Shade from sun\n3. Humidity tray"
    assert record["end_turn"] is True  # the trainer appends the template's end of turn
    parser = SketchParser(8)
    parser.feed(record["completion"])
    parser.close()
    assert tuple(parser.points) == sketch_example().points


def test_sketch_and_expansion_records_share_a_file_format(tmp_path: Path) -> None:
    expansion = Example("tune-002", "Why salt roads?", ("Lowers freezing",), 0, "It melts.", "t")
    path = tmp_path / "mixed.jsonl"
    write_dataset(path, [expansion, sketch_example()], {})
    records, _ = read_dataset(path)
    assert records == [expansion, sketch_example()]
    # Files written before the sketcher (no "kind") still read as expansions.
    assert "kind" not in expansion.to_json()
    assert "end_turn" not in training_record(expansion)
    with pytest.raises(ValueError, match="kind"):
        record_from_json({**sketch_example().to_json(), "kind": "poem"})


# -- distillation against a scripted teacher -------------------------------------------

QUESTIONS = [
    TuneQuestion("t1", "generic", QUESTION, "train"),
    TuneQuestion("t2", "generic", "How do I prepare for a hike in hot weather?", "train"),
    TuneQuestion("d1", "generic", "What are good ways to declutter a small flat?", "dev"),
]
# Greedy, then three sampled outlines: padded, complete and brief, a long title.
SKETCHES = [
    ("1. Water deeply\n2. Shade from sun\n3. Play music\n4. Paint the pot", "stop"),
    ("1. Water deeply\n2. Shade from sun\n3. Humidity tray", "stop"),
    ("1. Water deeply\n2. Move it somewhere cool and shady for the trip\n3. Tray", "stop"),
    ("1. Water deeply\n2. Shade from sun\n3. Humidity", "length"),
]


class ScriptedTeacher:
    """A chat endpoint: greedy answers ``SKETCHES[0]``, sampled requests the next ones, as
    many as ``n`` asks (like the embedded cloud) or one per request (``honour_n=False``)."""

    def __init__(
        self,
        honour_n: bool = True,
        sketches: list[tuple[str, str]] = SKETCHES,
        system: str = SKETCH_SYSTEM_OUTLINE,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.honour_n = honour_n
        self.sketches = sketches
        self.system = system
        self._next = 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        assert body["messages"][0]["content"] == self.system
        sketches = self.sketches
        if body["temperature"] == 0.0:
            picks, self._next = [0], 1
        else:
            n = body.get("n", 1) if self.honour_n else 1
            picks = list(range(self._next, self._next + n))
            self._next += n
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": sketches[k % len(sketches)][0]},
                "finish_reason": sketches[k % len(sketches)][1],
            }
            for i, k in enumerate(picks)
        ]
        return httpx.Response(200, json={"choices": choices})


def teacher(script: ScriptedTeacher) -> Teacher:
    client = httpx.Client(transport=httpx.MockTransport(script))
    return Teacher(TeacherConfig(base_url="http://teacher/v1", model="teach"), client=client)


def test_the_sketch_dataset_keeps_one_complete_brief_outline_per_question(
    tmp_path: Path,
) -> None:
    script = ScriptedTeacher()
    out = tmp_path / "sketch-v1.jsonl"
    manifest = build_sketch_dataset(
        teacher(script), QUESTIONS, out, sampling=SketchSampling(samples=4), manifest={}
    )
    records, digest = read_dataset(out)
    assert manifest["data_sha256"] == digest
    # Per train question: one greedy request, one request for the other three; dev never.
    assert len(script.requests) == 4
    assert all("declutter" not in json.dumps(r) for r in script.requests)
    greedy, sampled = script.requests[0], script.requests[1]
    assert "seed" not in greedy
    assert greedy["temperature"] == 0.0
    assert (sampled["n"], sampled["temperature"]) == (3, 0.7)
    assert script.requests[3]["seed"] != sampled["seed"]  # another question, another seed
    assert [
        (r.question_id, r.points, r.sample) for r in records if isinstance(r, SketchExample)
    ] == [
        ("t1", ("Water deeply", "Shade from sun", "Humidity tray"), 1),
        ("t2", ("Water deeply", "Shade from sun", "Humidity tray"), 1),
    ]
    assert manifest["dropped"] == {"long_title": 2, "truncated": 2}
    assert (manifest["samples_total"], manifest["samples_kept"]) == (8, 4)
    stats = manifest["sketch_stats"]
    assert (stats["greedy"]["mean_points"], stats["chosen"]["mean_points"]) == (4, 3)
    assert stats["chosen_is_greedy"] == 0


def test_a_server_that_ignores_n_is_asked_again_with_the_seed_moved_on(tmp_path: Path) -> None:
    script = ScriptedTeacher(honour_n=False)
    out = tmp_path / "sketch-v1.jsonl"
    build_sketch_dataset(
        teacher(script), QUESTIONS[:1], out, sampling=SketchSampling(samples=4), manifest={}
    )
    seeds = [r["seed"] for r in script.requests[1:]]
    assert len(script.requests) == 4
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    raw = json.loads(raw_cache_path(out).read_text())
    assert [s["seed"] for s in raw["samples"]] == [None, *seeds]


def test_an_interrupted_sketch_run_resumes_without_asking_again(tmp_path: Path) -> None:
    out = tmp_path / "sketch-v1.jsonl"
    sampling = SketchSampling(samples=4)
    build_sketch_dataset(
        teacher(ScriptedTeacher()), QUESTIONS[:1], out, sampling=sampling, manifest={}
    )
    with raw_cache_path(out).open("a") as f:
        f.write('{"question_id": "t2", "samp')  # a line cut by a crash: asked again
    second = ScriptedTeacher()
    manifest = build_sketch_dataset(teacher(second), QUESTIONS, out, sampling=sampling, manifest={})
    assert len(second.requests) == 2  # only t2
    assert manifest["examples"] == 2
    # Asking for more samples than are cached asks that question again.
    third = ScriptedTeacher()
    build_sketch_dataset(
        teacher(third), QUESTIONS[:1], out, sampling=SketchSampling(samples=5), manifest={}
    )
    assert len(third.requests) == 2


# -- the framed sketch (progressive.frame) ---------------------------------------------

OPENING = "A plant left alone needs water, shade and moist air:"
CLOSING = "Set up the day before you leave and it will wait for you."


def framed(*lines: str) -> str:
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        (
            framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING),
            "stop",
            None,
        ),
        # The list alone, as the unframed prompt writes it: no opening.
        (framed("1. Water deeply", "2. Shade from sun", "3. Humidity tray"), "stop", "no_opening"),
        # Stopped after the list: no closing.
        (
            framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray"),
            "stop",
            "no_closing",
        ),
        # A closing cut by the token cap is dropped by the parser: truncated first.
        (
            framed(
                OPENING,
                "1. Water deeply",
                "2. Shade from sun",
                "3. Humidity tray",
                "Set up the day",
            ),
            "length",
            "truncated",
        ),
        # Two lists under headings: the gateway reads it, the sketcher learns one list.
        (
            framed(
                OPENING,
                "1. Water deeply",
                "2. Shade from sun",
                "Before you go:",
                "3. Humidity tray",
                "4. Ask a neighbour",
                CLOSING,
            ),
            "stop",
            "sections",
        ),
        # Prose after the opening line: not an outline.
        (framed(OPENING, "Water it deeply and move it out of the sun."), "stop", "not_outline"),
    ],
)
def test_a_framed_sample_needs_its_opening_and_closing(
    text: str, finish: str, reason: str | None
) -> None:
    got = read_sample(QUESTION, {"text": text, "finish_reason": finish}, frame=True)
    assert sketcher.reject_reason(got) == reason
    if reason is None:
        assert (got.opening, got.closing) == (OPENING, CLOSING)
        assert got.points == ("Water deeply", "Shade from sun", "Humidity tray")


def test_the_frame_filters_leave_an_unframed_sample_alone() -> None:
    text = framed("1. Water deeply", "2. Shade from sun", "3. Humidity tray")
    got = read_sample(QUESTION, {"text": text, "finish_reason": "stop"}, frame=False)
    assert sketcher.reject_reason(got) is None
    assert (got.opening, got.closing, got.framed) == (None, None, False)


def framed_example() -> SketchExample:
    return replace(sketch_example(), opening=OPENING, closing=CLOSING)


def test_a_framed_record_is_the_framed_prompt_and_parses_back_with_its_frame() -> None:
    from pice.openai_protocol import ChatMessage

    record = training_record(framed_example())
    assert record["messages"] == sketch_messages(
        [ChatMessage(role="user", content=QUESTION)], allow_direct=False, frame=True
    )
    assert record["messages"][0]["content"] == SKETCH_SYSTEM_FRAMED
    assert record["completion"] == framed(
        OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING
    )
    parser = SketchParser(8, frame=True)
    events = [*parser.feed(record["completion"]), *parser.close()]
    assert tuple(parser.points) == framed_example().points
    assert [(e.text, e.closing) for e in events if isinstance(e, FrameText)] == [
        (OPENING, False),
        (CLOSING, True),
    ]


def test_frame_fields_round_trip_and_an_unframed_record_is_written_as_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sketch.jsonl"
    write_dataset(path, [framed_example(), sketch_example()], {})
    records, _ = read_dataset(path)
    assert records == [framed_example(), sketch_example()]
    # Unframed records carry no frame keys: files written before the frame hash the same.
    assert not {"opening", "closing"} & set(sketch_example().to_json())
    assert framed_example().to_json()["closing"] == CLOSING


FRAMED_SKETCHES = [
    # Greedy: the list and no closing.
    (framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray"), "stop"),
    (framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING), "stop"),
    (framed("1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING), "stop"),
    (framed(OPENING, "Water it deeply and move it out of the sun."), "stop"),
]


def test_the_framed_sketch_dataset_asks_the_framed_prompt_and_keeps_the_frame(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sketch-v1.jsonl"
    # A cache of the outline-only prompt is not reused for the framed one.
    build_sketch_dataset(
        teacher(ScriptedTeacher()), QUESTIONS[:1], out, sampling=SketchSampling(), manifest={}
    )
    script = ScriptedTeacher(sketches=FRAMED_SKETCHES, system=SKETCH_SYSTEM_FRAMED)
    sampling = SketchSampling(max_tokens=FRAMED_MAX_TOKENS, frame=True)
    manifest = build_sketch_dataset(
        teacher(script), QUESTIONS[:1], out, sampling=sampling, manifest={}
    )
    assert len(script.requests) == 2
    assert {r["max_tokens"] for r in script.requests} == {FRAMED_MAX_TOKENS}
    records, _ = read_dataset(out)
    assert records == [replace(framed_example(), question_id="t1", sample=1, agreement=1.0)]
    assert manifest["dropped"] == {"no_closing": 1, "no_opening": 1, "not_outline": 1}
    assert manifest["sampling"]["frame"] is True
