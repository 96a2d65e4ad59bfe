"""Item 3: no written line is lost or reordered, and a flood cannot grow our memory."""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from supervisor import GroupConfig, Supervisor
from tests.helpers import PY, REPO, config, eventually, group, script, toml_config

LINE_RE = re.compile(rb"^\(\w+ pid=(\d+)\) n=(\d+)$", re.M)

FAST_THEN_EXIT = (
    "import sys\n"
    "sys.stdout.buffer.write(b''.join(b'n=%d\\n' % i for i in range(200_000)))\n"
    "sys.stdout.buffer.write(b'n=200000')\n"  # an unterminated last line
)

# Numbered lines with os.write (one line per write, so the pipe holds whole
# lines); the mmap'd file records the last number whose write returned,
# which survives SIGKILL.
UNTIL_KILLED = """
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
mm = mmap.mmap(fd, 8)
n = 0
while True:
    os.write(1, b"n=%d\\n" % n)
    struct.pack_into("q", mm, 0, n)
    n += 1
"""


def _numbers(data: bytes) -> list[int]:
    return [int(m.group(2)) for m in LINE_RE.finditer(data)]


@pytest.mark.anyio
async def test_fast_writer_that_exits_at_once_loses_nothing(no_leaks: None) -> None:
    out = io.BytesIO()
    cfg = config(group("fast", FAST_THEN_EXIT, restart="never", replicas=2))
    async with Supervisor(cfg, stdout=out, stderr=out) as sup:
        assert await sup.wait() == 0
    data = out.getvalue()
    by_pid: dict[int, list[int]] = {}
    for m in LINE_RE.finditer(data):
        by_pid.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    assert len(by_pid) == 2
    for numbers in by_pid.values():
        assert numbers == list(range(200_001))  # every line, in order, the tail included


@pytest.mark.anyio
async def test_sigkill_mid_write_loses_no_written_line(tmp_path: Path, no_leaks: None) -> None:
    seq = tmp_path / "seq"
    seq.write_bytes(struct.pack("q", -1))
    out = io.BytesIO()
    cfg = config(GroupConfig(name="w", command=(PY, "-c", UNTIL_KILLED, str(seq)), restart="never"))

    def last_written() -> int:
        with open(seq, "rb") as f, mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ) as mm:
            return int(struct.unpack("q", mm[:8])[0])

    async with Supervisor(cfg, stdout=out, stderr=out) as sup:
        await eventually(lambda: last_written() > 20_000, what="writing")
        (status,) = sup.status()
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)  # not sent by the supervisor: a failure
        assert await sup.wait() == 1
    last = last_written()
    numbers = _numbers(out.getvalue())
    assert numbers[: last + 1] == list(range(last + 1)), f"lost lines before n={last}"
    assert numbers == list(range(len(numbers)))  # nothing after it out of order either
    (st,) = sup.status()
    assert st.last_returncode == -signal.SIGKILL


FLOOD = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    "for i in range(0, 400_000, 1000):\n"
    "    w(b''.join(b'n=%d ' % j + b'x' * 90 + b'\\n' for j in range(i, i + 1000)))\n"
)
FLOOD_RE = re.compile(rb"^\(\w+ pid=\d+\) n=(\d+) x{90}$")


def test_flood_with_a_slow_reader_keeps_memory_bounded(tmp_path: Path, no_leaks_sync: None) -> None:
    """40 MB written at full speed into a stdout drained at about 10 MB/s."""
    prog = script(tmp_path, "flood.py", FLOOD)
    cfg = toml_config(tmp_path, [{"name": "flood", "command": [PY, prog], "restart": "never"}])
    proc = subprocess.Popen(
        [PY, "-m", "supervisor", "serve", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        sup = psutil.Process(proc.pid)
        baseline = peak = 0
        expected = 0
        buf = b""
        deadline = time.monotonic() + 60
        while True:
            chunk = proc.stdout.read1(64 * 1024)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                m = FLOOD_RE.match(line)
                assert m, line[:200]
                assert int(m.group(1)) == expected
                expected += 1
            with contextlib.suppress(psutil.Error):
                rss = sup.memory_info().rss
                baseline = baseline or rss  # the supervisor is up: its first line is here
                peak = max(peak, rss)
            assert time.monotonic() < deadline, "flood not drained in 60 s"
            time.sleep(0.005)  # a slow terminal: about 10 MB/s
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert expected == 400_000
    growth = (peak - baseline) / 2**20
    # 40 MB went through; an unbounded buffer would hold most of it.
    assert growth < 16, f"supervisor RSS grew by {growth:.1f} MB during the flood"
