"""The merger: point order, live first point, held later points, failover resume."""

from __future__ import annotations

from pice_gateway.progressive.merge import Merger


def test_first_point_streams_live_and_later_points_are_held() -> None:
    merger = Merger()
    assert merger.add_point(0, "Alpha") == "1. **Alpha**:"
    assert merger.add_point(1, "Beta") == ""
    assert merger.delta(0, " one") == " one"
    assert merger.delta(1, " two") == ""
    assert merger.delta(0, " more") == " more"
    assert merger.done(1, "two, done") == ""
    assert merger.close_sketch() == ""
    assert not merger.finished
    assert merger.done(0) == "\n2. **Beta**: two, done\n"
    assert merger.finished


def test_whole_answer_is_a_clean_numbered_list() -> None:
    merger = Merger()
    out = [merger.add_point(i, t) for i, t in enumerate(["A", "B", "C"])]
    out.append(merger.close_sketch())
    for i in (2, 1, 0):
        out.append(merger.delta(i, f"Body {i}.\nnext"))
        out.append(merger.done(i))
    assert "".join(out) == (
        "1. **A**: Body 0. next\n2. **B**: Body 1. next\n3. **C**: Body 2. next\n"
    )


def test_restart_that_repeats_the_sent_text_continues_seamlessly() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    assert merger.delta(0, "Regular exercise") == " Regular exercise"
    merger.restart(0)
    assert merger.delta(0, "Regular") == ""
    assert merger.delta(0, " exercise helps") == " helps"
    assert merger.done(0) == "\n"


def test_restart_that_diverges_follows_an_ellipsis() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    merger.delta(0, "Regular exercise")
    merger.restart(0)
    assert merger.delta(0, "Moving daily") == " … Moving daily"
    assert merger.done(0) == "\n"


def test_restart_of_a_held_point_replaces_its_text() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    merger.add_point(1, "B")
    merger.delta(1, "lost text")
    merger.restart(1)
    merger.delta(1, "new text")
    merger.done(1)
    merger.close_sketch()
    assert merger.done(0, "first") == " first\n2. **B**: new text\n"


def test_a_point_that_opens_a_section_is_preceded_by_its_heading() -> None:
    merger = Merger()
    sections = [None, None, "Against:", "Against:"]
    out = [merger.add_point(i, t, s) for i, (t, s) in enumerate(zip("ABCD", sections, strict=True))]
    out.append(merger.close_sketch())
    for i in range(4):
        out.append(merger.done(i, f"Body {i}."))
    assert "".join(out) == (
        "1. **A**: Body 0.\n2. **B**: Body 1.\n\nAgainst:\n\n3. **C**: Body 2.\n4. **D**: Body 3.\n"
    )
