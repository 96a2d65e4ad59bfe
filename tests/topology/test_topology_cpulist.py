"""cpulist: Linux list syntax both ways, and every malformed text refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology import CpuListError, format_cpulist, parse_cpulist


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,8,10-11", (0, 1, 2, 3, 8, 10, 11)),
        (" 0 - 2 , 5 \n", (0, 1, 2, 5)),
        ("7", (7,)),
        ("3,1,2,1", (1, 2, 3)),
        ("4-4", (4,)),
    ],
)
def test_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cpulist(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("auto", "'auto' is not a number"),
        ("0,,1", "empty item"),
        ("0-3,", "trailing comma"),
        ("3-1", "reversed"),
        ("-1", "negative"),
        ("1--3", "negative"),
        ("a-3", "not a number"),
        ("1.5", "not a number"),
        ("0x3", "not a number"),
        ("3-", "not a number"),
    ],
)
def test_parse_refuses_with_reason(text: str, reason: str) -> None:
    with pytest.raises(CpuListError) as info:
        parse_cpulist(text)
    assert repr(text) in str(info.value)
    assert reason in str(info.value)


def test_empty_allowed_where_a_list_may_be_empty() -> None:
    assert parse_cpulist("\n", allow_empty=True) == ()


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([], ""), ([5], "5"), ([0, 1, 2, 3, 8, 10, 11], "0-3,8,10-11"), ([2, 0, 1, 1], "0-2")],
)
def test_format(cpus: list[int], text: str) -> None:
    assert format_cpulist(cpus) == text


@given(st.sets(st.integers(min_value=0, max_value=5000), min_size=1))
def test_round_trip(cpus: set[int]) -> None:
    assert parse_cpulist(format_cpulist(cpus)) == tuple(sorted(cpus))
