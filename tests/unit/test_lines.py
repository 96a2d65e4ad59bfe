"""LineSplitter: whole prefixed lines whatever the chunking, bounded pieces, raw bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.lines import LINE_LIMIT, LineSplitter

P = b"(w_0 pid=1) "


def expected(stream: bytes, limit: int) -> bytes:
    """What the contract promises: each line cut into pieces of at most ``limit`` bytes."""
    lines = stream.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the stream ended with a newline: no unterminated tail
    out = []
    for line in lines:
        pieces = [line[i : i + limit] for i in range(0, len(line), limit)] or [b""]
        out.extend(P + piece + b"\n" for piece in pieces)
    return b"".join(out)


def run(chunks: list[bytes], limit: int) -> bytes:
    s = LineSplitter(P, limit=limit)
    out = b"".join(s.feed(c) for c in chunks)
    return out + s.flush()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


alphabet = st.sampled_from([b"a", b"b", b"\n", b"\xff", b"\xc3", b"\x00", b"\r"])
streams = st.lists(alphabet, max_size=80).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=streams, cuts=st.lists(st.integers(0, 200), max_size=8), limit=st.integers(1, 9))
def test_any_chunking_gives_the_same_pieces(data: bytes, cuts: list[int], limit: int) -> None:
    assert run(split_at(data, cuts), limit) == expected(data, limit)


@settings(max_examples=100, deadline=None)
@given(data=streams, limit=st.integers(1, 9))
def test_pieces_are_bounded_and_prefixed(data: bytes, limit: int) -> None:
    out = run([bytes([b]) for b in data], limit)
    for piece in out.split(b"\n")[:-1]:
        assert piece.startswith(P)
        assert len(piece) - len(P) <= limit


@pytest.mark.parametrize("size", [LINE_LIMIT - 1, LINE_LIMIT, LINE_LIMIT + 1, 3 * LINE_LIMIT])
def test_real_limit_every_cut_position(size: int) -> None:
    line = bytes(i % 251 for i in range(size)).replace(b"\n", b"x")  # every other byte value
    data = line + b"\nafter\n"
    want = expected(data, LINE_LIMIT)
    for cut in (0, 1, LINE_LIMIT - 1, LINE_LIMIT, LINE_LIMIT + 1, size, size + 1, len(data)):
        assert run(split_at(data, [cut]), LINE_LIMIT) == want, cut


def test_non_utf8_bytes_pass_through() -> None:
    raw = b"caf\xe9 \xff\xfe\x80 ok\n"
    assert run([raw], LINE_LIMIT) == P + raw


def test_flush_returns_unterminated_tail_once() -> None:
    s = LineSplitter(P)
    assert s.feed(b"one\ntw") == P + b"one\n"
    assert s.pending == 2
    assert s.feed(b"o") == b""
    assert s.flush() == P + b"two\n"
    assert s.flush() == b""
    assert s.pending == 0


def test_exact_limit_line_split_before_newline_has_no_empty_piece() -> None:
    s = LineSplitter(P, limit=4)
    assert s.feed(b"abcd") == P + b"abcd\n"
    assert s.feed(b"\nx\n") == P + b"x\n"


def test_one_replace_keeps_many_lines_in_one_block() -> None:
    s = LineSplitter(P)
    assert s.feed(b"a\nb\nc\n") == P + b"a\n" + P + b"b\n" + P + b"c\n"


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        LineSplitter(P, limit=0)
