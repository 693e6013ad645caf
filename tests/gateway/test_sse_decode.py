"""SseDataDecoder: the SSE parsing rules the gateway relies on, whatever the chunking."""

from __future__ import annotations

import pytest

from pice_gateway.sse_decode import SseDataDecoder


def decode(*chunks: bytes) -> list[str]:
    decoder = SseDataDecoder()
    return [data for chunk in chunks for data in decoder.feed(chunk)]


def every_split(body: bytes) -> list[list[bytes]]:
    """``body`` cut in two at every position, and byte by byte."""
    cuts = [[body[:i], body[i:]] for i in range(len(body) + 1)]
    return [*cuts, [body[i : i + 1] for i in range(len(body))]]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_events_end_at_a_blank_line_with_any_line_end(end: bytes) -> None:
    body = b'data: {"a":1}' + end + end + b"data: [DONE]" + end + end
    for chunks in every_split(body):
        assert decode(*chunks) == ['{"a":1}', "[DONE]"], chunks


def test_multiline_data_is_joined_and_other_fields_and_comments_ignored() -> None:
    body = b": ping\n\nevent: x\nid: 7\ndata: one\ndata:two\ndata:  three\nretry: 5\n\n"
    for chunks in every_split(body):
        assert decode(*chunks) == ["one\ntwo\n three"], chunks


def test_an_event_without_data_is_not_one_and_data_without_colon_is_empty() -> None:
    assert decode(b"event: x\n\n") == []
    assert decode(b"data\n\n") == [""]


def test_an_unfinished_event_at_the_end_is_dropped() -> None:
    assert decode(b"data: a\n\ndata: b\n") == ["a"]
    assert decode(b"data: a\n\ndata: b") == ["a"]


def test_utf8_split_across_chunks_is_decoded_whole() -> None:
    body = "data: é€\n\n".encode()
    for chunks in every_split(body):
        assert decode(*chunks) == ["é€"], chunks


def test_an_event_ended_by_cr_is_not_held_back_for_the_next_chunk() -> None:
    decoder = SseDataDecoder()
    assert decoder.feed(b"data: a\r\r") == ["a"]
    # The LF completing a CRLF split across chunks is not a second (blank) line.
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\ndata: c\r\n\r\n") == ["b\nc"]
