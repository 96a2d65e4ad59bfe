"""One replica: spawn, forward output, await exit, and follow the restart policy.

Each replica is one task and one state machine. Its place (CPUs, nodes, env)
comes from its ``ReplicaPlan`` and is kept across restarts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import anyio.to_thread
import psutil

from topology import format_cpulist

from .exits import describe_exit, parse_signal
from .lines import LineSplitter
from .output import Stream
from .policy import Done, Escalate, Restart
from .process import Child, SpawnError, spawn
from .state import ReplicaState, check_transition

if TYPE_CHECKING:
    from .config import GroupConfig
    from .engine import Supervisor, _Group
    from .plan import ReplicaPlan

READ_SIZE = 256 * 1024
#: How long a replica's exit waits for its pipes to reach EOF before detaching.
DRAIN_TIMEOUT = 1.0
#: How long SIGKILL may take to be seen (a process in uninterruptible sleep).
KILL_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A snapshot of one replica, for ``Supervisor.status()``."""

    name: str
    group: str
    index: int
    pid: int | None
    state: str
    restarts: int
    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    started_at: float | None
    last_exit: str | None
    last_returncode: int | None


class Replica:
    def __init__(
        self, sup: Supervisor, group: _Group, plan: ReplicaPlan, color_index: int | None
    ) -> None:
        self.sup = sup
        self.group = group
        self.plan = plan
        self.name = plan.name
        self.config: GroupConfig = group.config
        self.stop_signal = parse_signal(self.config.stop_signal)
        self.color_index = color_index
        self.state = ReplicaState.PENDING
        self.child: Child | None = None
        self.restarts = 0
        self.started_at: float | None = None
        self.last_exit: str | None = None
        self.last_returncode: int | None = None
        self._sent: set[int] = set()
        self._requested = False
        self._manual_restart = False
        self.spawn_attempted = anyio.Event()
        self._gate: anyio.Event | None = None
        # Processes that kept an output pipe open after their replica exited.
        self._strays: list[psutil.Process] = []
        self._pipes: set[int] = set()
        self._gone = anyio.Event()
        self._drained = anyio.Event()
        self._wake = anyio.Event()

    # -- state -------------------------------------------------------------
    def _to(self, new: ReplicaState) -> None:
        check_transition(self.state, new)
        self.state = new

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            name=self.name,
            group=self.plan.group,
            index=self.plan.index,
            pid=self.child.pid if self.child and self.child.returncode is None else None,
            state=self.state.value,
            restarts=self.restarts,
            cpus=tuple(self.plan.cpus),
            nodes=tuple(self.plan.nodes),
            started_at=self.started_at,
            last_exit=self.last_exit,
            last_returncode=self.last_returncode,
        )

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.returncode is None

    # -- spawning ------------------------------------------------------------
    def start(self) -> str | None:
        """Spawn the process now; return the reason on failure."""
        try:
            return self._start()
        finally:
            # Wake whoever waits for this (re)start, e.g. Supervisor.restart().
            self.spawn_attempted.set()
            self.spawn_attempted = anyio.Event()

    def _start(self) -> str | None:
        self._to(ReplicaState.STARTING)
        self._sent.clear()
        self._requested = False
        self._gone = anyio.Event()
        self._drained = anyio.Event()
        p = self.plan
        try:
            child = spawn(
                p.argv,
                env=p.env,
                cwd=p.cwd,
                user=self.config.user,
                group=self.config.group,
                umask=self.config.umask,
            )
        except SpawnError as exc:
            self.child = None
            self._gone.set()
            self._drained.set()
            self.sup.log.error(
                "replica_spawn_failed", replica=self.name, error=str(exc), argv=list(p.argv)
            )
            return str(exc)
        self.child = child
        self._pipes = {os.fstat(child.stdout).st_ino, os.fstat(child.stderr).st_ino}
        self.started_at = time.time()
        self._to(ReplicaState.RUNNING)
        self.sup.log.info(
            "replica_started",
            replica=self.name,
            pid=child.pid,
            cpus=format_cpulist(p.cpus),
            nodes=format_cpulist(p.nodes),
        )
        prefix = self.sup.prefix_for(self, child.pid)
        pending = [2]
        # This child's event: pumps of an earlier, detached child must not set a later one's.
        drained = self._drained

        async def pump(fd: int, stream: Stream) -> None:
            try:
                await self._pump(fd, stream, LineSplitter(prefix), child.pid)
            finally:
                pending[0] -= 1
                if not pending[0]:
                    drained.set()

        self.sup.spawn_task(pump, child.stdout, "stdout")
        self.sup.spawn_task(pump, child.stderr, "stderr")
        return None

    async def _pump(self, fd: int, stream: Stream, splitter: LineSplitter, pid: int) -> None:
        sink = self.sup.sink
        name = self.name
        try:
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    await anyio.wait_readable(fd)
                    continue
                if not data:
                    break
                out = splitter.feed(data)
                if out:
                    await sink.write(name, pid, stream, out)
                # A child that writes without pause must not starve the loop.
                await anyio.lowlevel.checkpoint()
            tail = splitter.flush()
            if tail:
                await sink.write(name, pid, stream, tail)
        finally:
            os.close(fd)

    # -- supervising ---------------------------------------------------------
    async def supervise(self, spawn_error: str | None) -> None:
        """Run until the replica is done, failed (escalated) or stopped."""
        try:
            await self._supervise(spawn_error)
        finally:
            self.sup.replica_finished(self)

    async def _supervise(self, spawn_error: str | None) -> None:
        while True:
            if self.child is not None:
                rc = await self._watch(self.child)
                ours = rc < 0 and -rc in self._sent
                cause = describe_exit(rc, sent=-rc if ours else None)
                failed = rc != 0 and not ours
                self.last_exit, self.last_returncode = cause, rc
                pid: int | None = self.child.pid
            else:
                cause, failed, pid = f"could not start: {spawn_error}", True, None
                self.last_exit, self.last_returncode = cause, None
            self.sup.log.info(
                "replica_exited",
                replica=self.name,
                pid=pid,
                cause=cause,
                exit_code=self.last_returncode,
            )
            if self.sup.stopping:
                self._finish(ReplicaState.EXITED)
                return
            if self._manual_restart or self._gate is not None:
                resumed = await self._wait_gate()
                if not resumed:
                    self._finish(ReplicaState.EXITED)
                    return
                spawn_error = self._respawn()
                continue
            decision = self.group.budget.decide(failed=failed, now=anyio.current_time())
            if isinstance(decision, Done):
                self._finish(ReplicaState.EXITED)
                return
            if isinstance(decision, Escalate):
                self._finish(ReplicaState.FAILED)
                self.sup.escalate(self, cause, decision.reason)
                return
            assert isinstance(decision, Restart)
            if self.config.restart_scope == "group":
                await self.group.restart_others(self)
            self._to(ReplicaState.BACKOFF)
            self.sup.log.warning(
                "replica_restarting",
                replica=self.name,
                delay=round(decision.delay, 3),
                restart=decision.count,
                max_restarts=self.config.max_restarts,
                cause=cause,
            )
            if not await self._sleep(decision.delay):
                self._to(ReplicaState.EXITED)
                return
            if self.config.restart_scope == "group":
                self.group.open_gate()
            spawn_error = self._respawn()

    def _respawn(self) -> str | None:
        self.restarts += 1
        if self.state is not ReplicaState.BACKOFF:
            self._to(ReplicaState.BACKOFF)
        return self.start()

    def _finish(self, state: ReplicaState) -> None:
        self._to(state)

    async def _watch(self, child: Child) -> int:
        rc = await child.wait()
        self._gone.set()
        # Whatever is left in its process group would be orphaned: kill it.
        child.signal_group(signal.SIGKILL)
        with anyio.move_on_after(self.sup.drain_timeout):
            await self._drained.wait()
        if not self._drained.is_set():
            holders = await anyio.to_thread.run_sync(_pipe_holders, self._pipes)
            self._strays.extend(holders)
            self.sup.log.warning(
                "output_detached",
                replica=self.name,
                pid=child.pid,
                holders=[p.pid for p in holders],
                reason=f"a descendant still holds its output pipe {self.sup.drain_timeout:g} s "
                "after it exited; its output keeps being forwarded until the supervisor stops, "
                "which kills it",
            )
        return rc

    async def _sleep(self, delay: float) -> bool:
        """Back off; False when a stop cut it short."""
        self._wake = anyio.Event()
        if self.sup.stopping:
            return False
        with anyio.move_on_after(delay):
            await self._wake.wait()
        return not self.sup.stopping

    async def _wait_gate(self) -> bool:
        gate = self._gate
        self._manual_restart = False
        if self.state is not ReplicaState.BACKOFF:
            self._to(ReplicaState.BACKOFF)
        if gate is not None:
            self._wake = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def opened() -> None:
                    await gate.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(opened)
                await self._wake.wait()
                tg.cancel_scope.cancel()
            self._gate = None
        return not self.sup.stopping

    def wake(self) -> None:
        self._wake.set()

    # -- stopping --------------------------------------------------------------
    def send(self, signum: int) -> bool:
        """Send a signal the supervisor means (so dying of it is no failure)."""
        if not self.alive:
            return False
        assert self.child is not None
        self._sent.add(signum)
        return self.child.signal_group(signum)

    def begin_stop(self) -> None:
        if not self.alive:
            return
        assert self.child is not None
        self._requested = True
        if self.state is ReplicaState.RUNNING:
            self._to(ReplicaState.STOPPING)
        self.child.snapshot_descendants()
        self.send(self.stop_signal)

    def kill(self) -> bool:
        """SIGKILL the tree and any stray; True when the replica itself was still alive."""
        self.kill_strays()
        if self.child is None:
            return False
        was_alive = self.alive
        self._sent.add(signal.SIGKILL)
        if was_alive:
            self.child.kill_tree()
        else:
            # Reaped: its pid may belong to someone else now; only the
            # descendants psutil remembers (it checks for reuse) are ours.
            for proc in self.child.descendants:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        return was_alive

    def kill_strays(self) -> None:
        """SIGKILL the processes that held an output pipe past their replica's exit."""
        strays, self._strays = self._strays, []
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # psutil checks that the pid was not reused

    async def wait_gone(self) -> None:
        await self._gone.wait()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def stop_alone(self, timeout: float) -> None:
        """Bounded stop of just this replica's current child (group or manual restart).

        Tied to that child: the replica may already run its successor when
        this wakes up, and that one must not be killed.
        """
        child, gone = self.child, self._gone
        if child is None or child.returncode is not None:
            return
        self.begin_stop()
        with anyio.move_on_after(timeout):
            await gone.wait()
        if not gone.is_set():
            self.sup.log.warning(
                "replica_killed",
                replica=self.name,
                pid=child.pid,
                reason=f"ignored {self.stop_signal.name} for {timeout:g} s; sent SIGKILL",
            )
            self._sent.add(signal.SIGKILL)
            child.kill_tree()
            with anyio.move_on_after(KILL_WAIT):
                await gone.wait()


def _pipe_holders(inodes: set[int]) -> list[psutil.Process]:
    """Other processes with one of these pipes open: the descendants that left the group.

    They were reparented away from the replica's tree, so only the pipe they
    hold still ties them to it; /proc is scanned once, and only on a detach.
    """
    wanted = {f"pipe:[{ino}]" for ino in inodes}
    me = os.getpid()
    found: list[psutil.Process] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target in wanted:
                    with contextlib.suppress(psutil.Error):
                        found.append(psutil.Process(int(entry.name)))
                    break
    return found
