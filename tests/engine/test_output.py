"""Output: whole prefixed lines, right stream, bounded pieces, raw bytes, nothing lost."""

from __future__ import annotations

import io
import os
import re

import anyio
import pytest

from supervisor import Supervisor
from supervisor.lines import LINE_LIMIT
from tests.engine.test_semantics import cfg, grp, sup_for
from tests.engine.util import Events, Journal

pytestmark = pytest.mark.anyio


async def run_to_end(code: str, events: Events, **kw: object) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    with anyio.fail_after(5):
        async with Supervisor(
            cfg(grp("w", code, restart="never")), stdout=out, stderr=err, logger=events, **kw
        ) as sup:
            pid = sup.status()[0].pid
            assert pid is not None
            assert await sup.wait() == 0
    return out.getvalue(), err.getvalue(), pid


async def test_each_stream_to_its_own_in_order_with_prefix(no_leaks: None, events: Events) -> None:
    code = (
        "import sys\nfor i in range(200):\n    print('out', i); print('err', i, file=sys.stderr)\n"
    )
    out, err, pid = await run_to_end(code, events)
    p = f"(w_0 pid={pid}) "
    assert out.decode() == "".join(f"{p}out {i}\n" for i in range(200))
    assert err.decode() == "".join(f"{p}err {i}\n" for i in range(200))


async def test_five_megabytes_without_newline_arrive_whole_in_64k_pieces(
    no_leaks: None, events: Events
) -> None:
    size = 5 * 1024 * 1024
    code = f"import sys; sys.stdout.buffer.write(bytes(range(11, 251)) * ({size} // 240))"
    out, _, pid = await run_to_end(code, events)
    prefix = f"(w_0 pid={pid}) ".encode()
    pieces = out.split(b"\n")
    assert pieces[-1] == b""
    pieces = pieces[:-1]
    assert all(p.startswith(prefix) for p in pieces)
    body = [p[len(prefix) :] for p in pieces]
    assert all(len(b) == LINE_LIMIT for b in body[:-1]) and 0 < len(body[-1]) <= LINE_LIMIT
    assert b"".join(body) == bytes(range(11, 251)) * (size // 240)


async def test_bytes_that_are_not_utf8_pass_through(no_leaks: None, events: Events) -> None:
    raw = b"caf\xe9 \xff\xfe \xc3\x28 \x80"
    code = (
        "import sys;"
        f"sys.stdout.buffer.write({raw!r} + b'\\n');"
        f"sys.stderr.buffer.write({raw!r})"  # unterminated, on stderr
    )
    out, err, pid = await run_to_end(code, events)
    prefix = f"(w_0 pid={pid}) ".encode()
    assert out == prefix + raw + b"\n"
    assert err == prefix + raw + b"\n"


async def test_lines_of_a_child_that_exits_at_once_are_all_forwarded(
    no_leaks: None, events: Events
) -> None:
    # Written to the pipe before we read a byte (less than its 64 KiB buffer), then exit.
    code = (
        "import os\n"
        "data = b''.join(b'line %d\\n' % i for i in range(3000)) + b'last words'\n"
        "os.write(1, data); os._exit(0)\n"
    )
    out, _, pid = await run_to_end(code, events)
    p = f"(w_0 pid={pid}) "
    want = "".join(f"{p}line {i}\n" for i in range(3000)) + f"{p}last words\n"
    assert out.decode() == want


async def test_exit_is_reported_after_the_pipes_are_drained(no_leaks: None) -> None:
    journal: list[tuple[str, object]] = []
    events = Events(journal)
    out, err = Journal("out", journal), Journal("err", journal)
    code = "import os; os.write(1, b'x' * 3_000_000 + b'\\nend\\n'); os.write(2, b'tail')"
    with anyio.fail_after(5):
        async with Supervisor(
            cfg(grp("w", code, restart="never")), stdout=out, stderr=err, logger=events
        ) as sup:
            assert await sup.wait() == 0
    kinds = [k if k != "log" else v["event"] for k, v in journal]  # type: ignore[index]
    exited = kinds.index("replica_exited")
    assert kinds[exited - 1] in ("out", "err")
    assert "out" not in kinds[exited:] and "err" not in kinds[exited:]
    assert bytes(out.data).endswith(b") end\n") and bytes(err.data).endswith(b") tail\n")


ESC = re.compile(rb"\x1b\[(\d+)m\(w_(\d) pid=\d+\)\x1b\[0m ")


async def test_color_gives_each_replica_its_own_colour(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    with anyio.fail_after(5):
        async with Supervisor(
            cfg(grp("w", "print('hi')", replicas=3, restart="never")),
            stdout=out,
            stderr=io.BytesIO(),
            logger=events,
            color=True,
        ) as sup:
            assert await sup.wait() == 0
    found = dict((int(i), code) for code, i in ESC.findall(out.getvalue()))
    assert sorted(found) == [0, 1, 2]
    assert len(set(found.values())) == 3


@pytest.mark.parametrize(
    ("mode", "environ", "colored"),
    [
        ("auto", {}, True),
        ("auto", {"NO_COLOR": "1"}, False),
        ("never", {}, False),
    ],
)
async def test_color_modes_on_a_tty(
    no_leaks: None, events: Events, mode: str, environ: dict[str, str], colored: bool
) -> None:
    master, slave = os.openpty()
    tty = os.fdopen(slave, "wb", buffering=0)
    try:
        config = cfg(grp("w", "print('hi')", restart="never"))
        config = type(config)(
            groups=config.groups,
            supervisor=type(config.supervisor)(shutdown_timeout=0.5, color=mode),
            base_dir=config.base_dir,
        )
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | environ
        with anyio.fail_after(5):
            async with Supervisor(
                config, stdout=tty, stderr=tty, logger=events, environ=env
            ) as sup:
                assert await sup.wait() == 0
        got = os.read(master, 65536)
    finally:
        tty.close()
        os.close(master)
    assert b"hi" in got
    assert (b"\x1b[" in got) is colored


async def test_without_a_tty_auto_writes_no_escape_byte(no_leaks: None, events: Events) -> None:
    config = cfg(grp("w", "print('hi')", restart="never"))
    config = type(config)(
        groups=config.groups,
        supervisor=type(config.supervisor)(shutdown_timeout=0.5, color="auto"),
        base_dir=config.base_dir,
    )
    out = io.BytesIO()
    with anyio.fail_after(5):
        async with Supervisor(config, stdout=out, stderr=out, logger=events) as sup:
            assert await sup.wait() == 0
    assert b"hi" in out.getvalue() and b"\x1b" not in out.getvalue()


async def test_a_flooding_child_does_not_starve_the_supervisor(
    no_leaks: None, events: Events
) -> None:
    """The pump yields after every chunk, so timers and stop() still run."""
    code = "import os\nwhile True: os.write(1, b'y' * 65536 + b'\\n')"
    sink = io.BytesIO()
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code)), events, sink) as sup:
            with anyio.fail_after(1):  # a timer must fire while the pipe never empties
                await anyio.sleep(0.2)
            assert await sup.stop() == 0
    assert len(sink.getvalue()) > 65536
