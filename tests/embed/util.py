"""Children and readiness for the embedding tests.

Every child carries a unique token in its argv (``sys.argv[1]``), and so does
the grandchild it starts, so ``procs_with(token)`` finds the whole tree.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from supervisor import GroupConfig, OutputLine
from tests.helpers import PY

#: Starts a grandchild, says "ready", then sleeps; SIGTERM ends both.
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]])
print('ready', flush=True)
time.sleep(120)
"""

#: Like TREE, but the child and its grandchild ignore SIGTERM: only SIGKILL ends them.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: print('term', flush=True))
subprocess.Popen([sys.executable, '-c',
    'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)',
    sys.argv[1]])
print('ready', flush=True)
while True:
    time.sleep(120)
"""


def token() -> str:
    return f"pv-embed-{uuid.uuid4().hex}"


def tree_group(name: str, tok: str, code: str = TREE, **kw: Any) -> GroupConfig:
    return GroupConfig(name=name, command=(PY, "-c", code, tok), **kw)


class Lines:
    """An ``on_output`` callback that keeps every line and counts markers."""

    def __init__(self) -> None:
        self.records: list[OutputLine] = []
        self._waits: list[tuple[bytes, int, anyio.Event]] = []

    def __call__(self, rec: OutputLine) -> None:
        self.records.append(rec)
        for line, n, event in self._waits:
            if self.count(line) >= n:
                event.set()

    def count(self, line: bytes) -> int:
        return sum(1 for r in self.records if r.line == line)

    async def wait_for(self, line: bytes, n: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until ``line`` has arrived ``n`` times."""
        event = anyio.Event()
        self._waits.append((line, n, event))
        if self.count(line) >= n:
            event.set()
        with anyio.fail_after(timeout):
            await event.wait()


#: What the contract and the issue promise in every status record.
STATUS_FIELDS = frozenset(
    {
        "name",
        "group",
        "index",
        "pid",
        "state",
        "restarts",
        "cpus",
        "nodes",
        "started_at",
        "last_exit",
    }
)
