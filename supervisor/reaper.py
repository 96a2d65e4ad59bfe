"""Subreaper duties for ``serve`` (and PID 1 duties in a container).

As child subreaper, descendants that double-fork out of a replica are
re-parented to us rather than to init, so they can be reaped and killed at
shutdown. Reaping is driven by SIGCHLD (the OS wakes us) and touches only
pids we did not spawn: a replica's own pid is reaped by its pidfd waiter.
Only the CLI uses this: a library must not change process-wide settings.
With a ``run_id`` it also starts the guard (see ``guard.py``), which kills
the replicas' descendants if this process dies without running any code.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import psutil

from .guard import Guard
from .process import PROC_CHILDREN, children_of
from .signals import SignalPipe

if TYPE_CHECKING:
    from .engine import Supervisor

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Ask the kernel to re-parent our orphaned descendants to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def own_children() -> set[int]:
    """Our direct children, from the kernel's child lists when it has them."""
    if PROC_CHILDREN:
        return set(children_of(os.getpid()))
    return {p.pid for p in psutil.Process().children()}


class Reaper:
    """Reap adopted orphans on SIGCHLD; kill and reap what is left at the end."""

    def __init__(self, sup: Supervisor, *, run_id: str | None = None) -> None:
        self._sup = sup
        self._run_id = run_id
        self.guard: Guard | None = None
        self.reaped = 0
        self.subreaper = False
        self._sigchld = anyio.Event()

    async def __aenter__(self) -> Reaper:
        self.subreaper = os.getpid() == 1 or become_subreaper()
        # uvloop refuses loop-level SIGCHLD handlers: a self-pipe works everywhere.
        self._signals = SignalPipe([signal.SIGCHLD]).__enter__()
        if self._run_id is not None:
            try:
                self.guard = Guard(self._run_id)
            except OSError as exc:  # fd or process limits: run on, but say what is lost
                self._sup.log.warning(
                    "guard_unavailable",
                    error=str(exc),
                    consequence="if the supervisor is SIGKILLed, descendants that left a "
                    "replica's process may outlive it",
                )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._signals.__exit__(None, None, None)
        if self.guard is not None:
            # serve exits right after this: the guard's interpreter teardown
            # (~4 ms) need not be part of the stop.
            self.guard.close(wait=False)

    def _ours(self) -> set[int]:
        """Children that are not orphans: live replicas and the guard."""
        mine = self._sup.managed_pids()
        if self.guard is not None:
            mine.add(self.guard.pid)
        return mine

    async def run(self) -> None:
        self.reap()  # anything that exited before the handler was in place
        async for _ in self._signals:
            self.reap()
            self._sigchld.set()
            self._sigchld = anyio.Event()

    def reap(self) -> int:
        """waitpid each orphan that has exited; never a replica's own pid."""
        count = 0
        for pid in own_children() - self._ours():
            with contextlib.suppress(ChildProcessError):
                got, _ = os.waitpid(pid, os.WNOHANG)
                if got:
                    count += 1
        self.reaped += count
        return count

    async def finish(self) -> None:
        """After the replicas are gone: SIGKILL adopted orphans' trees, then reap them."""
        leftovers: list[psutil.Process] = []
        for pid in own_children() - self._ours():
            try:
                proc = psutil.Process(pid)
                leftovers.extend([proc, *proc.children(recursive=True)])
            except psutil.Error:
                continue
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if leftovers:
            self._sup.log.warning("orphans_killed", count=len(leftovers))
        with anyio.move_on_after(2.0):
            while own_children() - self._ours():
                if not self.reap():
                    await self._sigchld.wait()  # the next SIGCHLD, not a poll
