"""Output to what the host gives: a byte stream, a text stream, a callback, or
``sup.lines()``, an async iterator with a bound (a slow reader slows the replicas).
"""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import pytest

from supervisor import OutputLine, Supervisor
from tests.embed.util import Lines
from tests.helpers import config, eventually, group

pytestmark = pytest.mark.anyio

#: Two lines, the second with bytes that are not UTF-8, and an unterminated tail.
WRITER = "import os, sys; os.write(1, b'one\\nbad \\xff\\xfe end\\ntail');os.write(2, b'err\\n')"


async def test_bytes_stream_gets_every_byte(no_leaks: None) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    async with Supervisor(
        config(group("w", WRITER, restart="never")), stdout=out, stderr=err
    ) as sup:
        pid = sup.status()[0].pid
        assert await sup.wait() == 0
    p = f"(w_0 pid={pid}) ".encode()
    assert out.getvalue() == p + b"one\n" + p + b"bad \xff\xfe end\n" + p + b"tail\n"
    assert err.getvalue() == p + b"err\n"


async def test_text_stream_without_buffer_gets_surrogateescaped_text(no_leaks: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    async with Supervisor(
        config(group("w", WRITER, restart="never")), stdout=out, stderr=err
    ) as sup:
        pid = sup.status()[0].pid
        assert await sup.wait() == 0
    text = out.getvalue()
    assert text.splitlines()[1] == f"(w_0 pid={pid}) bad \udcff\udcfe end"
    p = f"(w_0 pid={pid}) ".encode()
    assert text.encode("utf-8", "surrogateescape") == (
        p + b"one\n" + p + b"bad \xff\xfe end\n" + p + b"tail\n"
    )
    assert err.getvalue() == f"(w_0 pid={pid}) err\n"


async def test_text_stream_with_buffer_keeps_the_hosts_order(no_leaks: None) -> None:
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    text.write("host says hello\n")  # still in the text layer's buffer
    async with Supervisor(config(group("w", WRITER, restart="never")), stdout=text) as sup:
        assert await sup.wait() == 0
    data = raw.getvalue()
    assert data.startswith(b"host says hello\n(w_0 pid=")
    assert b" bad \xff\xfe end\n" in data


async def test_sync_and_async_callbacks_get_records(no_leaks: None) -> None:
    got_sync = Lines()
    got_async: list[OutputLine] = []

    async def collect(rec: OutputLine) -> None:
        await anyio.lowlevel.checkpoint()
        got_async.append(rec)

    for sink in (got_sync, collect):
        async with Supervisor(config(group("w", WRITER, restart="never")), on_output=sink) as sup:
            pid = sup.status()[0].pid
            assert pid is not None
            assert await sup.wait() == 0
        records = got_sync.records if sink is got_sync else got_async
        assert sorted(records, key=lambda r: r.stream) == [
            OutputLine("w_0", pid, "stderr", b"err"),
            OutputLine("w_0", pid, "stdout", b"one"),
            OutputLine("w_0", pid, "stdout", b"bad \xff\xfe end"),
            OutputLine("w_0", pid, "stdout", b"tail"),
        ]


async def test_lines_iterator_yields_in_order_and_ends_with_the_supervisor(
    no_leaks: None,
) -> None:
    code = "import os\nfor i in range(500): print(os.environ['SUPERVISOR_NAME'], i)"
    cfg = config(group("w", code, replicas=2, restart="never"))
    got: list[OutputLine] = []
    async with Supervisor(cfg, line_buffer=8) as sup:
        with anyio.fail_after(20):
            async for rec in sup.lines():  # ends by itself once every replica is done
                got.append(rec)
        assert await sup.wait() == 0
    for name in ("w_0", "w_1"):
        mine = [r.line for r in got if r.replica == name]
        assert mine == [f"{name} {i}".encode() for i in range(500)]


async def test_lines_iterator_ends_when_the_host_stops_it(no_leaks: None) -> None:
    cfg = config(group("w", "import time\nwhile True: print('tick', flush=True); time.sleep(0.2)"))
    got: list[bytes] = []
    ended = anyio.Event()
    async with anyio.create_task_group() as tg:
        async with Supervisor(cfg, line_buffer=4) as sup:

            async def read() -> None:
                async for rec in sup.lines():
                    got.append(rec.line)
                ended.set()

            tg.start_soon(read)
            await eventually(lambda: len(got) >= 2)
        # Leaving the block stopped the replica, and that ended the reader's loop.
        with anyio.fail_after(5):
            await ended.wait()
    assert got[:2] == [b"tick", b"tick"]


def _blocked_in_pipe_write(pid: int) -> bool:
    return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()


async def test_slow_reader_slows_the_replica(no_leaks: None) -> None:
    """With ``line_buffer=1`` and nobody reading, the replica blocks on its pipe."""
    code = "import sys\nfor i in range(3000): sys.stdout.write('%04d ' % i + 'x' * 200 + '\\n')"
    cfg = config(group("w", code, restart="never"))
    async with Supervisor(cfg, line_buffer=1) as sup:
        pid = sup.status()[0].pid
        assert pid is not None
        lines = sup.lines()

        def held_back() -> bool:
            stats = lines.statistics()
            return (
                stats.current_buffer_used == 1  # the bound holds
                and stats.tasks_waiting_send == 1  # our pump waits for the reader
                and _blocked_in_pipe_write(pid)  # and so the replica waits for the pump
            )

        await eventually(held_back, what="replica held back by the unread buffer")
        assert sup.status()[0].state == "running"
        got = [rec.line async for rec in lines]
        assert await sup.wait() == 0
    assert [line[:4] for line in got] == [b"%04d" % i for i in range(3000)]


async def test_lines_needs_line_buffer_and_excludes_other_targets() -> None:
    cfg = config(group("w", "pass"))
    with pytest.raises(RuntimeError, match="line_buffer"):
        Supervisor(cfg).lines()
    with pytest.raises(ValueError, match="not several"):
        Supervisor(cfg, line_buffer=4, stdout=io.BytesIO())
    with pytest.raises(ValueError, match=">= 1"):
        Supervisor(cfg, line_buffer=0)
