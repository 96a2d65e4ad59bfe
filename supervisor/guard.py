"""The guard: kills every replica's descendants when the supervisor dies, SIGKILL included.

``setpriv --pdeathsig`` kills only each replica's own process. What it
started (its process group, or a daemon that did setsid and double-forked)
would be orphaned if the supervisor were SIGKILLed, since no code of ours
runs then. So ``serve`` starts this small process in a session of its own,
holding the read end of a pipe whose write end only the supervisor has
(close-on-exec, so no replica inherits it). When the supervisor dies, for
any reason, the kernel closes that end, the guard's read returns EOF, and it
SIGKILLs every process whose environment carries this run's
``SUPERVISOR_RUN_ID`` plus every member of their process groups and
sessions, in rounds until none is left, then exits.

The guard process runs this file as a script with the standard library only
(``python -I -S guard.py RUN_ID``): it starts in milliseconds and never
imports the supervisor or its event loop.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping

#: Set in every replica's environment by ``serve``; the guard finds descendants by it.
RUN_ID_ENV = "SUPERVISOR_RUN_ID"
#: Written by the supervisor before it closes the pipe after a clean stop.
CLEAN = b"clean"
#: How long the guard keeps sweeping for processes forked while it kills.
SWEEP_SECONDS = 1.0


def new_run_id() -> str:
    return uuid.uuid4().hex


class Guard:
    """The supervisor's side: start the guard process, and stop it at the end."""

    def __init__(self, run_id: str, environ: Mapping[str, str] | None = None) -> None:
        self.run_id = run_id
        env = dict(os.environ if environ is None else environ)
        env.pop(RUN_ID_ENV, None)  # the guard must never match its own sweep (nor an outer one)
        r, self._w = os.pipe2(os.O_CLOEXEC)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), run_id],
                stdin=r,
                stdout=subprocess.DEVNULL,  # it never writes there; do not hold a pipe open
                env=env,
                start_new_session=True,  # a Ctrl-C or killpg meant for us never reaches it
                close_fds=True,
            )
        except BaseException:
            os.close(self._w)
            raise
        finally:
            os.close(r)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self, timeout: float = 5.0, *, clean: bool = True, wait: bool = True) -> int | None:
        """Tell the guard the stop was clean (no sweep needed) and reap it.

        ``clean=False`` closes the pipe as the supervisor's death would.
        ``wait=False`` (serve, about to exit) does not wait for the guard's
        own interpreter to finish: it exits by itself at once, and whoever
        adopts it when we are gone reaps it.

        The wait is on a pidfd, so it ends the moment the guard exits rather
        than on Popen.wait's sleep steps.
        """
        if self._w >= 0:
            if clean:
                with contextlib.suppress(OSError):
                    os.write(self._w, CLEAN)
            os.close(self._w)
            self._w = -1
        if not wait:
            self._proc.returncode = 0  # not ours to reap any more; silence Popen.__del__
            return None
        try:
            pidfd = os.pidfd_open(self._proc.pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            try:
                select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
        try:
            return self._proc.wait(0 if pidfd >= 0 else timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()
        except ChildProcessError:  # reaped by someone else
            return None


# -- the guard process ---------------------------------------------------------


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def _stat(pid: int) -> tuple[int, int] | None:
    """(pgid, sid) of ``pid``; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[2]), int(fields[3])


def _victims(needle: bytes, groups: set[int], sessions: set[int], me: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in (me, 1):
            continue
        ids = _stat(pid)
        if ids is None:
            continue
        pgid, sid = ids
        if pgid in groups or sid in sessions or _environ_has(pid, needle):
            groups.add(pgid)
            sessions.add(sid)
            found.append(pid)
    return found


def sweep(run_id: str, deadline: float = SWEEP_SECONDS) -> int:
    """SIGKILL every process of this run, in rounds, until a round finds none."""
    needle = f"{RUN_ID_ENV}={run_id}".encode()
    me = os.getpid()
    my_ids = _stat(me)
    groups: set[int] = set()
    sessions: set[int] = set()
    killed: set[int] = set()
    end = time.monotonic() + deadline
    while True:
        found = _victims(needle, groups, sessions, me)
        if my_ids is not None:  # never our own group or session
            groups.discard(my_ids[0])
            sessions.discard(my_ids[1])
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        if not found or time.monotonic() > end:
            return len(killed)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: guard.py RUN_ID (started by `python -m supervisor serve`)", file=sys.stderr)
        return 2
    run_id = argv[1]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    parent = os.getppid()
    while True:
        try:
            data = os.read(0, 4096)
        except InterruptedError:
            continue
        if not data:
            break  # EOF without the word: the supervisor died
        if CLEAN in data:
            return 0  # a clean stop already killed and reaped everything
    killed = sweep(run_id)
    if killed:
        print(
            f"supervisor guard: supervisor pid {parent} is gone; "
            f"SIGKILLed {killed} leftover process(es) of its replicas",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
