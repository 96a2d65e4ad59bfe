"""Linux CPU list syntax (``0-3,8,10-11``), strict: a bad mask must never mean "all"."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import CpuListError


def _number(token: str, text: str) -> int:
    if not token.isdigit() or not token.isascii():
        what = "a negative number" if token.startswith("-") else f"{token!r} is not a number"
        raise CpuListError(f"bad CPU list {text!r}: {what}")
    return int(token)


def parse_cpulist(text: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Parse ``0-3,8`` into sorted unique ids; empty text is an error unless allowed."""
    stripped = text.strip()
    if not stripped:
        if allow_empty:
            return ()
        raise CpuListError(f"bad CPU list {text!r}: empty, expected ids like '0-3,8'")
    ids: set[int] = set()
    for raw in stripped.split(","):
        token = raw.strip()
        if token.isdigit() and token.isascii():  # fast path: a single id
            ids.add(int(token))
            continue
        if not token:
            raise CpuListError(f"bad CPU list {text!r}: empty item (stray or trailing comma)")
        first, dash, last = token.partition("-")
        if dash and not first.strip():
            raise CpuListError(f"bad CPU list {text!r}: {token!r} is negative or lacks a start")
        lo = _number(first.strip(), text)
        hi = _number(last.strip(), text) if dash else lo
        if hi < lo:
            raise CpuListError(f"bad CPU list {text!r}: range {token!r} is reversed")
        ids.update(range(lo, hi + 1))
    return tuple(sorted(ids))


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format ids as the shortest Linux list (``0-3,8``); ``""`` for none."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    start = prev = -2
    for cpu in ordered:
        if cpu != prev + 1:
            if start >= 0:
                parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cpu
        prev = cpu
    if start >= 0:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)
