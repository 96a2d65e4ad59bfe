"""OutputHistory: bounded rings, arrival order, followers that drop oldest with a marker."""

from __future__ import annotations

import anyio
import pytest

from supervisor.history import OutputHistory, dropped_marker


def block(prefix: str, start: int, n: int) -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(start, start + n))


def test_last_merges_replicas_in_arrival_order() -> None:
    h = OutputHistory()
    h.record("a_0", "stdout", b"a1\na2\n")
    h.record("b_0", "stderr", b"b1\n")
    h.record("a_0", "stdout", b"a3\n")
    assert h.last(["a_0", "b_0"], 3) == [b"a2\n", b"b1\n", b"a3\n"]
    assert h.last(["a_0"], 10) == [b"a1\n", b"a2\n", b"a3\n"]
    assert h.last(["b_0", "zzz"], 10) == [b"b1\n"]
    assert h.last(["a_0"], 0) == []


def test_ring_is_bounded_by_bytes_and_keeps_whole_newest_lines() -> None:
    h = OutputHistory(ring_bytes=1000)
    for i in range(100):
        h.record("r", "stdout", block("x", i * 50, 50))
    kept = h.last(["r"], 10**6)
    assert 0 < sum(map(len, kept)) <= 1000
    assert kept[-1] == b"x 4999\n"
    assert all(line.startswith(b"x ") and line.endswith(b"\n") for line in kept)
    # one block larger than the ring: its newest whole lines stay
    h.record("big", "stdout", block("y", 0, 10_000))
    big = h.last(["big"], 10**6)
    assert big[-1] == b"y 9999\n" and sum(map(len, big)) <= 1000
    assert all(line.startswith(b"y ") for line in big)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 99, 100, 101, 1000])
def test_last_n_matches_a_line_by_line_model(n: int) -> None:
    h = OutputHistory()
    model: list[bytes] = []
    for i, size in enumerate([1, 5, 17, 3, 40, 2, 30]):
        name = f"r_{i % 3}"
        data = block(name, i * 100, size)
        h.record(name, "stdout", data)
        model.extend(data.splitlines(keepends=True))
    assert h.last(["r_0", "r_1", "r_2"], n) == model[-n:]


def test_record_does_not_loop_per_line_and_ignores_empty_blocks() -> None:
    h = OutputHistory()
    h.record("r", "stdout", b"")
    assert h.last(["r"], 5) == []
    big = block("z", 0, 20_000)  # ~170 KiB of lines in one call
    h.record("r", "stdout", big)
    assert h.last(["r"], 1) == [b"z 19999\n"]


def test_follower_yields_new_lines_only_and_close_ends_it() -> None:
    async def main() -> list[bytes]:
        h = OutputHistory()
        h.record("r", "stdout", b"old\n")
        got: list[bytes] = []
        follower = h.follow(["r"])

        async def reader() -> None:
            async for line in follower:
                got.append(line)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.lowlevel.checkpoint()
            h.record("r", "stdout", b"n1\nn2\n")
            h.record("other", "stdout", b"not followed\n")
            await anyio.lowlevel.checkpoint()
            h.record("r", "stderr", b"n3\n")
            follower.close()
        return got

    assert anyio.run(main) == [b"n1\n", b"n2\n", b"n3\n"]


def test_follower_that_falls_behind_gets_the_newest_lines_and_a_marker() -> None:
    async def main() -> bytes:
        h = OutputHistory()
        with h.follow(["r"], max_lines=100) as follower:
            for i in range(50):
                h.record("r", "stdout", block("f", i * 30, 30))  # 1500 lines, never read
            assert follower.dropped == 1400
            return await follower.read()

    data = anyio.run(main)
    lines = data.splitlines(keepends=True)
    assert lines[0] == dropped_marker(1400) == b"... 1400 lines dropped ...\n"
    assert lines[1:] == block("f", 1400, 100).splitlines(keepends=True)


def test_closed_follower_is_unsubscribed_and_never_fills() -> None:
    h = OutputHistory()
    f = h.follow(["r", "s"], max_lines=10)
    f.close()
    h.record("r", "stdout", block("x", 0, 1000))
    assert f.dropped == 0
    assert h._followers == {}


def test_history_close_ends_every_follower() -> None:
    async def main() -> bytes:
        h = OutputHistory()
        f = h.follow(["r"])
        async with anyio.create_task_group() as tg:
            result: list[bytes] = []

            async def reader() -> None:
                result.append(await f.read())

            tg.start_soon(reader)
            await anyio.lowlevel.checkpoint()
            h.close()
        return result[0]

    assert anyio.run(main) == b""
