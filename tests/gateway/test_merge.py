"""The merger: point order, live first point, held later points, failover resume."""

from __future__ import annotations

from pice_gateway.progressive.merge import HOLD_TOKENS, Merger, hold_from


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


def test_a_live_point_stops_showing_text_at_a_loop() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    shown = [merger.delta(0, word) for word in ["Rome", " was", " a", " single,"]]
    shown += [merger.delta(0, " single,") for _ in range(12)]
    shown.append(merger.done(0, "Rome was a single," + " single," * 12, cut=True))
    text = "".join(shown)
    assert text.count("single") < 8, "at most the loop's first copies went out"
    assert text.endswith(" …\n"), "the cut is marked"
    assert merger.trimmed(0) == "loop"


def test_a_held_point_cut_by_its_share_ends_on_its_last_full_sentence() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    merger.add_point(1, "B")
    merger.close_sketch()
    assert merger.done(1, "Antibodies bind the virus. White cells then help to", cut=True) == ""
    assert merger.trimmed(1) == "length"
    out = merger.delta(0, "Fine.") + merger.done(0)
    assert out == " Fine.\n2. **B**: Antibodies bind the virus.\n"
    assert merger.trimmed(0) is None
    assert merger.text_of(1) == "Antibodies bind the virus."


def test_a_live_point_cut_after_its_last_sentence_keeps_what_was_sent() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    assert merger.delta(0, "One. Two three") == " One. Two three"
    assert merger.done(0, cut=True) == " …\n"
    assert merger.text_of(0) == "One. Two three …"


def live(merger: Merger, words: list[str]) -> str:
    return "".join(merger.delta(0, word) for word in words)


TEXT = "Antibodies bind it. White cells then engulf the virus. And help to"
PIECES = [piece if i == 0 else " " + piece for i, piece in enumerate(TEXT.split(" "))]


def test_a_live_point_near_its_share_shows_whole_sentences_so_a_cut_leaves_none_half_sent() -> None:
    # An 8-token share: from the 6th delta on only whole sentences go out.
    assert hold_from(8) == 6
    merger = Merger(point_tokens=8)
    merger.add_point(0, "A")
    assert live(merger, PIECES[:5]) == " Antibodies bind it. White cells"
    assert live(merger, PIECES[5:8]) == "", "the unfinished sentence is held back"
    assert merger.delta(0, PIECES[8]) == " then engulf the virus.", "and goes out once whole"
    assert live(merger, PIECES[9:]) == ""
    assert merger.done(0, cut=True) == "\n", "cut: the held half sentence is dropped"
    assert merger.text_of(0) == "Antibodies bind it. White cells then engulf the virus."
    assert merger.trimmed(0) == "length"


def test_a_held_sentence_goes_out_whole_when_the_point_ends_on_its_own() -> None:
    merger = Merger(point_tokens=1)  # holding from the first delta
    assert hold_from(1) == 1
    merger.add_point(0, "A")
    assert live(merger, PIECES[:3]) == " Antibodies bind it."
    assert live(merger, PIECES[3:8]) == ""
    assert merger.delta(0, PIECES[8]) == " White cells then engulf the virus."
    assert live(merger, PIECES[9:]) == ""
    assert merger.done(0) == " And help to\n"
    assert merger.trimmed(0) is None, "not cut: everything it wrote is shown"


def test_a_hold_that_began_mid_sentence_still_marks_a_cut() -> None:
    merger = Merger(point_tokens=8)
    merger.add_point(0, "A")
    live(merger, PIECES[:8])  # "… White cells" sent, "then engulf the" held
    assert merger.done(0, cut=True) == " then engulf the …\n"


def test_without_a_share_nothing_is_held() -> None:
    merger = Merger()
    merger.add_point(0, "A")
    assert live(merger, PIECES) == " " + TEXT


def test_the_hold_covers_about_a_sentence_and_at_most_the_last_third_of_a_share() -> None:
    assert hold_from(96) == 96 - HOLD_TOKENS  # the default share: one sentence's worth
    assert hold_from(76) == 76 - HOLD_TOKENS
    assert hold_from(24) == 16, "a small share streams its first two thirds"


# -- the request's limit, spent in point order ---------------------------------------------


def words(text: str) -> list[str]:
    """One delta a word, as an edge streams about a token a delta."""
    parts = text.split(" ")
    return [part if i == 0 else " " + part for i, part in enumerate(parts)]


def test_the_bodies_share_the_limit_in_point_order() -> None:
    # 10 tokens for the bodies: point 1 takes 4, point 2 the 6 it wrote, point 3 nothing.
    merger = Merger(point_tokens=96, body_tokens=10)
    out = [merger.add_point(i, t) for i, t in enumerate("ABC")]
    out.append(merger.close_sketch())
    for i, body in enumerate(["One two three four.", "Five six seven eight nine ten."]):
        out += [merger.delta(i, w) for w in words(body)]
        out.append(merger.done(i, tokens=len(words(body))))
    assert "".join(out) == (
        "1. **A**: One two three four.\n2. **B**: Five six seven eight nine ten.\n"
    )
    assert merger.exhausted, "nothing is left for point 3: the answer ends"
    assert merger.finished
    assert merger.done(2, "Never shown.", tokens=2) == ""


def test_a_live_point_past_what_the_limit_left_is_closed_on_its_last_sentence() -> None:
    merger = Merger(point_tokens=96, body_tokens=12)
    merger.add_point(0, "A")
    merger.add_point(1, "B")
    merger.done(0, "Four tokens long here.", tokens=4)
    merger.close_sketch()
    # Point 2 has 8 tokens left ("… then engulf the" is its eighth). From its 6th delta the
    # unfinished sentence is held ("then engulf the"); the ninth delta closes the point there,
    # with no full sentence past what was sent: the cut is marked, and no later text goes out.
    shown = live_at(merger, 1, PIECES)
    assert shown == " Antibodies bind it. White cells then engulf the …\n"
    assert merger.exhausted
    assert merger.trimmed(1) == "length"
    # The source's own end, arriving later, changes nothing that was shown.
    assert merger.done(1, TEXT, tokens=len(PIECES)) == ""
    assert merger.text_of(1) == "Antibodies bind it. White cells then engulf the …"


def live_at(merger: Merger, index: int, pieces: list[str]) -> str:
    return "".join(merger.delta(index, piece) for piece in pieces)


def test_a_held_point_whose_deltas_were_not_seen_is_cut_in_proportion() -> None:
    # An ensemble's choice arrives whole: 12 tokens, 5 left for it, so about its first
    # 5/12 of characters, then its last full sentence there.
    merger = Merger(point_tokens=96, body_tokens=9)
    merger.add_point(0, "A")
    merger.add_point(1, "B")
    merger.close_sketch()
    body = "Short one. Then a much longer second sentence that runs on past it."
    assert merger.done(1, body, tokens=12) == ""
    out = merger.done(0, "Four tokens long here.", tokens=4)
    assert out == " Four tokens long here.\n2. **B**: Short one.\n"
    assert merger.trimmed(1) == "length"
    assert merger.exhausted


def test_a_body_within_what_is_left_is_shown_whole_and_the_answer_goes_on() -> None:
    merger = Merger(point_tokens=96, body_tokens=100)
    merger.add_point(0, "A")
    merger.close_sketch()
    assert merger.done(0, "All of it.", tokens=3) == "1. **A**: All of it.\n"[len("1. **A**:") :]
    assert not merger.exhausted
    assert merger.finished
    assert merger.trimmed(0) is None


def test_without_a_limit_the_bodies_are_never_cut_by_the_merger() -> None:
    merger = Merger(point_tokens=4)
    merger.add_point(0, "A")
    merger.close_sketch()
    # A source that wrote past the share it was given (it enforces its own cap): shown whole.
    assert merger.done(0, "One two three four five six.", tokens=6) == (
        " One two three four five six.\n"
    )
    assert not merger.exhausted
