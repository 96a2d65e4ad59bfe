"""One replica: its lifecycle task, its process, its output pumps.

A replica runs its lifecycle (``state.py``) in one task. It reports what
happened — spawned, ready, exited with this code — and its group decides
what follows (restart, done, escalate); it never reaches into the group's or
the supervisor's internals. Requests from outside (stop, restart, start,
remove) are stored as its ``want`` and a stop deadline, then a change event
wakes the task; the task reads them whenever it decides, so none is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.lowlevel
import anyio.to_thread
import psutil

from topology import format_cpulist

from .exits import describe_exit, parse_signal
from .lines import LineSplitter
from .output import Stream
from .process import Child, SpawnError, spawn
from .readiness import ATTEMPT_TIMEOUT, http_ok, retry_until, tcp_ok
from .state import Event, ReplicaState, next_state

if TYPE_CHECKING:
    from .config import GroupConfig, ProbeSpec
    from .plan import ReplicaPlan

READ_SIZE = 256 * 1024
#: How long a replica's exit waits for its pipes to reach EOF before detaching.
DRAIN_TIMEOUT = 1.0
#: How long SIGKILL may take to be seen (a process in uninterruptible sleep).
KILL_WAIT = 5.0
#: How long a death by a stop-like signal nobody here sent waits for the
#: supervisor's own stop request: systemd, scancel and ``kill -- -PGID`` signal
#: the replicas and the supervisor together, and the replica's exit may be seen
#: first. Only then is it taken for a failure.
STOP_GRACE = 0.5
_STOP_LIKE = frozenset(
    {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL}
)

Want = Literal["run", "stop", "restart", "remove"]


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
    ready: bool = False
    status_text: str = ""
    placement: str = ""
    lines_stdout: int = 0
    lines_stderr: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the group decided after a process ended: an event, and a delay for RESTART."""

    event: Event
    delay: float = 0.0


class Host(Protocol):
    """What a replica needs from the ones above it: effects and decisions, no internals."""

    @property
    def log(self) -> Any: ...
    @property
    def drain_timeout(self) -> float: ...
    @property
    def stopping(self) -> bool: ...

    def prefix(self, replica: Replica, pid: int) -> bytes: ...
    async def write(self, replica: Replica, pid: int, stream: Stream, data: bytes) -> None: ...
    def start_task(self, fn: object, *args: object) -> None: ...
    async def flushed(self, stream: Stream) -> None: ...
    def socket_fds(self, names: tuple[str, ...]) -> tuple[int, ...]: ...
    def notify_socket(self) -> str: ...
    def shutdown_timeout(self) -> float: ...
    @property
    def child_nofile(self) -> tuple[int, int] | None: ...
    def decide(self, replica: Replica, *, failed: bool, cause: str) -> Outcome: ...
    async def may_start(self, replica: Replica) -> None: ...
    def may_start_now(self, replica: Replica) -> bool: ...
    async def stop_requested(self) -> None: ...
    def changed(self, replica: Replica) -> None: ...
    def verify(self, replica: Replica) -> None: ...


class Replica:
    def __init__(
        self, host: Host, config: GroupConfig, plan: ReplicaPlan, color_index: int | None
    ) -> None:
        self.host = host
        self.config = config
        self.plan = plan
        self.name = plan.name
        self.index = plan.index
        self.stop_signal = parse_signal(config.stop_signal)
        self.color_index = color_index
        self.state = ReplicaState.PENDING
        self.child: Child | None = None
        self.restarts = 0
        self.spawns = 0
        self.started_at: float | None = None
        self.last_exit: str | None = None
        self.last_returncode: int | None = None
        self.ready = False
        self.status_text = ""
        self.placement = ""
        self.lines = {"stdout": 0, "stderr": 0}
        self.want: Want = "run"
        self.backoff_delay = 0.0
        self._deadline: float | None = None  # stop the live process by then
        self._forced = False
        self._failure: str | None = None
        self._ready_signal = anyio.Event()
        self._beat = anyio.Event()
        self._line_re: re.Pattern[bytes] | None = None
        self._grace = 0.0
        self._sent: set[int] = set()
        self._stop_sent: Child | None = None
        self._change = anyio.Event()
        self._strays: list[psutil.Process] = []
        self._pipes: set[int] = set()
        self._gone = anyio.Event()
        self._reported = anyio.Event()
        self._drained = anyio.Event()
        self._eof: list[bool] = []
        self._writing: list[bool] = []
        self.finished = anyio.Event()
        self.settled = anyio.Event()  # first ready, or first end: start() waits on it

    # -- state and requests ---------------------------------------------------
    def fire(self, event: Event) -> None:
        self.state = next_state(self.state, event)
        if self.state in (ReplicaState.RUNNING, ReplicaState.BACKOFF, ReplicaState.STOPPED) or (
            self.state.terminal
        ):
            self.settled.set()
        self.host.changed(self)

    def request(self, want: Want, *, timeout: float | None = None) -> None:
        """Store a request and wake the task; a stop request also sets its deadline."""
        if self.want != "remove":  # a replica on its way out stays on its way out
            self.want = want
        if want != "run" and timeout is not None:
            self.stop_by(anyio.current_time() + timeout, grace=timeout)
        self._poke()

    def stop_by(self, deadline: float, *, grace: float, forced: bool = False) -> None:
        """The live process must be gone by ``deadline`` (``grace`` s after the request)."""
        if self._deadline is None or deadline < self._deadline:
            self._deadline, self._grace = deadline, grace
        self._forced = self._forced or forced
        self._poke()

    def _poke(self) -> None:
        change, self._change = self._change, anyio.Event()
        change.set()

    async def _changed(self) -> None:
        await self._change.wait()

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            name=self.name,
            group=self.plan.group,
            index=self.index,
            pid=self.pid,
            state=self.state.value,
            restarts=self.restarts,
            cpus=tuple(self.plan.cpus),
            nodes=tuple(self.plan.nodes),
            started_at=self.started_at,
            last_exit=self.last_exit,
            last_returncode=self.last_returncode,
            ready=self.ready and self.alive,
            status_text=self.status_text,
            placement=self.placement,
            lines_stdout=self.lines["stdout"],
            lines_stderr=self.lines["stderr"],
        )

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.alive and self.child is not None else None

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.returncode is None

    # -- the lifecycle task ----------------------------------------------------
    async def run(self) -> None:
        """Drive the lifecycle until the replica is done, failed, removed or shut down."""
        try:
            while True:
                state = self.state
                if state is ReplicaState.PENDING:
                    if self.host.stopping:
                        self.fire(Event.SHUTDOWN)
                        return
                    if self.want in ("stop", "remove"):
                        self.fire(Event.HOLD)
                        continue
                    if not await self._wait_turn():
                        continue
                    await self._run_process()
                elif state is ReplicaState.BACKOFF:
                    await self._backoff()
                elif state is ReplicaState.STOPPED:
                    if self.host.stopping or self.want == "remove":
                        if self.host.stopping:
                            self.fire(Event.SHUTDOWN)
                        return
                    if self.want in ("run", "restart"):
                        self.want = "run"
                        self.fire(Event.START_REQUESTED)
                        continue
                    await self._changed()
                else:  # EXITED, FAILED: done
                    return
        finally:
            self.settled.set()
            self.finished.set()
            self.host.changed(self)

    async def _wait_turn(self) -> bool:
        """Wait for the group's go (start order, group restarts); False when a request came."""
        if self.host.may_start_now(self):
            self.want = "run"
            return True
        async with anyio.create_task_group() as tg:
            went = False

            async def go() -> None:
                nonlocal went
                await self.host.may_start(self)
                went = True
                tg.cancel_scope.cancel()

            async def interrupted() -> None:
                while not self.host.stopping and self.want in ("run", "restart"):
                    await self._changed()
                tg.cancel_scope.cancel()

            tg.start_soon(go)
            tg.start_soon(interrupted)
        if went and not self.host.stopping and self.want in ("run", "restart"):
            self.want = "run"
            return True
        return False

    async def _backoff(self) -> None:
        delay = self.backoff_delay
        deadline = anyio.current_time() + delay
        while True:
            if self.host.stopping:
                self.fire(Event.SHUTDOWN)
                return
            if self.want in ("stop", "remove"):
                self.fire(Event.HOLD)
                return
            if self.want == "restart":  # restart now: skip what is left of the delay
                break
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                await self._changed()
        self.restarts += 1
        self.fire(Event.BACKOFF_ELAPSED)

    async def _run_process(self) -> None:
        """Spawn, supervise until the process ends, then fire the group's decision."""
        plan = self.plan
        self._sent.clear()
        if self.want == "run":  # a stop asked for meanwhile keeps its deadline
            self._deadline = None
            self._forced = False
        self._failure = None
        self._ready_signal = anyio.Event()
        self._beat = anyio.Event()
        spec = plan.ready
        self._line_re = (
            re.compile(spec.pattern.encode("utf-8", "surrogateescape"))
            if spec.kind == "line"
            else None
        )
        self.ready = False
        self.status_text = ""
        self.placement = ""
        self.spawns += 1
        env = plan.env
        if spec.kind == "notify":
            env = {**env, "NOTIFY_SOCKET": self.host.notify_socket()}
        try:
            child = spawn(
                plan.argv,
                env=env,
                cwd=plan.cwd,
                user=self.config.user,
                group=self.config.group,
                umask=self.config.umask,
                fds=self.host.socket_fds(plan.sockets),
                nofile=self.host.child_nofile,
            )
        except SpawnError as exc:
            self.child = None
            self.host.log.error(
                "replica_spawn_failed", replica=self.name, error=str(exc), argv=list(plan.argv)
            )
            cause = f"could not start: {exc}"
            self.last_exit, self.last_returncode = cause, None
            self.host.log.info(
                "replica_exited", replica=self.name, pid=None, cause=cause, exit_code=None
            )
            self._decide(failed=True, cause=cause)
            return
        self.child = child
        self._pipes = {os.fstat(child.stdout).st_ino, os.fstat(child.stderr).st_ino}
        self.started_at = time.time()
        self._gone = anyio.Event()
        self._reported = anyio.Event()
        self.fire(Event.SPAWNED)
        fields: dict[str, object] = {"replica": self.name, "pid": child.pid}
        if plan.cpus:
            fields["cpus"] = format_cpulist(plan.cpus)
        if plan.nodes:
            fields["nodes"] = format_cpulist(plan.nodes)
        self.host.log.info("replica_started", **fields)
        self._start_pumps(child)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._enforce, child)
            if spec.kind == "started" and self.plan.health is None:
                self._mark_ready()  # no probe, no liveness: no task needed
            else:
                tg.start_soon(self._become_ready, child)
            if plan.cpus:
                tg.start_soon(self._verify_soon)
            rc = await self._watch(child)
            tg.cancel_scope.cancel()
        ours = rc < 0 and -rc in self._sent
        cause = describe_exit(rc, sent=-rc if ours else None)
        failed = rc != 0 and not ours
        if self._failure is not None:
            failed, cause = True, f"{self._failure}; {cause}"
        self.last_exit, self.last_returncode = cause, rc
        self.host.log.info(
            "replica_exited", replica=self.name, pid=child.pid, cause=cause, exit_code=rc
        )
        self._reported.set()
        if failed and self.want == "run" and not self.host.stopping and _stop_like(rc):
            with anyio.move_on_after(STOP_GRACE):
                await self.host.stop_requested()
        self._decide(failed=failed, cause=cause)

    def _decide(self, *, failed: bool, cause: str) -> None:
        outcome = self.host.decide(self, failed=failed, cause=cause)
        self.backoff_delay = outcome.delay
        self.fire(outcome.event)

    async def _become_ready(self, child: Child) -> None:
        """Wait for the ready condition (bounded by ready_timeout), then check liveness."""
        spec = self.plan.ready
        if spec.kind != "started":
            timeout = self.config.ready_timeout
            deadline = anyio.current_time() + timeout
            ok = False
            if spec.kind == "tcp":
                assert spec.address is not None
                address = spec.address
                ok = await retry_until(lambda: tcp_ok(address), deadline)
            elif spec.kind == "http":
                url = spec.url
                ok = await retry_until(lambda: http_ok(url), deadline)
            else:  # notify, line: pushed to us
                with anyio.move_on_after(timeout):
                    await self._ready_signal.wait()
                ok = self._ready_signal.is_set()
            if not ok:
                self._fail_live(f"not ready within {timeout:g} s ({self.config.ready})")
                return
        self._mark_ready()
        if spec.kind != "started":
            self.host.log.info("replica_ready", replica=self.name, pid=child.pid)
        await self._liveness()

    def _mark_ready(self) -> None:
        self.ready = True
        if self.state is ReplicaState.STARTING:
            self.fire(Event.READY)

    async def _liveness(self) -> None:
        """Health checks and the sd_notify watchdog; misses in a row are a failure."""
        health = self.plan.health
        watchdog = self.config.watchdog if self.plan.ready.kind == "notify" else 0.0
        if health is None and not watchdog:
            return
        async with anyio.create_task_group() as tg:
            if health is not None:
                tg.start_soon(self._health_loop, health)
            if watchdog:
                tg.start_soon(self._watchdog_loop, watchdog)

    async def _health_loop(self, spec: ProbeSpec) -> None:
        interval = self.config.health_interval
        misses = 0
        while True:
            await anyio.sleep(interval)
            bound = min(interval, ATTEMPT_TIMEOUT)
            if spec.kind == "tcp":
                assert spec.address is not None
                ok = await tcp_ok(spec.address, bound)
            else:
                ok = await http_ok(spec.url, bound)
            misses = 0 if ok else misses + 1
            if misses >= self.config.health_failures:
                self._fail_live(f"failed {misses} health checks in a row ({self.config.health})")
                return

    async def _watchdog_loop(self, every: float) -> None:
        while True:
            beat = self._beat
            with anyio.move_on_after(every):
                await beat.wait()
            if not beat.is_set():
                self._fail_live(f"no WATCHDOG=1 for {every:g} s")
                return

    def _fail_live(self, reason: str) -> None:
        """Not ready in time, or found dead: stop the process; its exit is a failure."""
        self._failure = reason
        self.host.log.warning("replica_unhealthy", replica=self.name, pid=self.pid, reason=reason)
        grace = self.host.shutdown_timeout()
        self.stop_by(anyio.current_time() + grace, grace=grace)

    def notified(self, fields: dict[str, str]) -> None:
        """An sd_notify datagram from this replica's process tree."""
        if "STATUS" in fields:
            self.status_text = fields["STATUS"]
        if fields.get("READY") == "1":
            self._ready_signal.set()
        if fields.get("WATCHDOG") == "1":
            beat, self._beat = self._beat, anyio.Event()
            beat.set()
        if fields.get("STOPPING") == "1":
            self.host.log.info("replica_stopping", replica=self.name, pid=self.pid)
        self.host.changed(self)

    def _match_ready(self, block: bytes, skip: int) -> None:
        """``ready = "line:REGEX"``: search each forwarded line (prefix skipped) until ready."""
        pattern = self._line_re
        if pattern is None or self._ready_signal.is_set():
            return
        for line in block.split(b"\n"):
            if pattern.search(line[skip:]):
                self._ready_signal.set()
                return

    async def _verify_soon(self) -> None:
        await anyio.sleep(0.5)  # within a second of the start, once its wrappers exec'd
        self.host.verify(self)

    async def _enforce(self, child: Child) -> None:
        """Carry out stop and restart requests on the live process, bounded by the deadline."""
        while True:
            change = self._change
            stopping = self.host.stopping or self.want != "run" or self._deadline is not None
            if not stopping:
                await change.wait()
                continue
            self.begin_stop()
            deadline = self._deadline
            if deadline is None:
                await change.wait()
                continue
            remaining = deadline - anyio.current_time()
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    await change.wait()
                continue
            if child.returncode is not None:
                return  # it is gone; only its output is still being written
            why = (
                "second stop request"
                if self._forced
                else f"ignored {self.stop_signal.name} for {self._grace:g} s"
            )
            self.host.log.warning(
                "replica_killed",
                replica=self.name,
                pid=child.pid,
                reason=f"{why}; sent SIGKILL to its process tree",
            )
            self._sent.add(signal.SIGKILL)
            child.kill_tree()
            return

    # -- output ----------------------------------------------------------------
    def _start_pumps(self, child: Child) -> None:
        prefix = self.host.prefix(self, child.pid)
        pending = [2]
        # This child's events: pumps of an earlier, detached child must not set a later one's.
        drained = self._drained = anyio.Event()
        eof = self._eof = [False, False]
        writing = self._writing = [False, False]

        async def pump(fd: int, stream: Stream, slot: int) -> None:
            try:
                await self._pump(fd, stream, LineSplitter(prefix), child.pid, eof, writing, slot)
            finally:
                pending[0] -= 1
                if not pending[0]:
                    drained.set()

        self.host.start_task(pump, child.stdout, "stdout", 0)
        self.host.start_task(pump, child.stderr, "stderr", 1)

    async def _pump(
        self,
        fd: int,
        stream: Stream,
        splitter: LineSplitter,
        pid: int,
        eof: list[bool],
        writing: list[bool],
        slot: int,
    ) -> None:
        host = self.host
        lines = self.lines
        skip = len(self.host.prefix(self, pid))
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
                    lines[stream] += out.count(b"\n")
                    if self._line_re is not None:
                        self._match_ready(out, skip)
                    writing[slot] = True
                    await host.write(self, pid, stream, out)
                    writing[slot] = False
                # A child that writes without pause must not starve the loop.
                await anyio.lowlevel.checkpoint()
            eof[slot] = True
            tail = splitter.flush()
            if tail:
                lines[stream] += 1
                await host.write(self, pid, stream, tail)
            await host.flushed(stream)  # written, not just queued, before the exit is told
        finally:
            os.close(fd)

    async def _watch(self, child: Child) -> int:
        rc = await child.wait()
        self._gone.set()
        # Whatever is left in its process group would be orphaned: kill it.
        child.signal_group(signal.SIGKILL)
        drained, eof, writing = self._drained, self._eof, self._writing
        with anyio.move_on_after(self.host.drain_timeout):
            await drained.wait()
        if drained.is_set():
            return rc
        if all(e or w for e, w in zip(eof, writing, strict=True)):
            # Each pipe ended or its pump waits on a slow reader of ours, which
            # holds the last lines back. Wait (a stop abandons that reader).
            await drained.wait()
            return rc
        holders = await anyio.to_thread.run_sync(_pipe_holders, self._pipes)
        self._strays.extend(holders)
        self.host.log.warning(
            "output_detached",
            replica=self.name,
            pid=child.pid,
            holders=[p.pid for p in holders],
            reason=f"a descendant still holds its output pipe {self.host.drain_timeout:g} s "
            "after it exited; its output keeps being forwarded until the supervisor stops, "
            "which kills it",
        )
        return rc

    # -- signals ------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Send the live process its stop signal, once (the supervisor's stop calls
        this for every replica in one pass; ``_enforce`` for single requests)."""
        child = self.child
        if child is None or child.returncode is not None or self._stop_sent is child:
            return
        self._stop_sent = child
        if self.state in (ReplicaState.STARTING, ReplicaState.RUNNING):
            self.fire(Event.STOP_SENT)
        child.snapshot_descendants()  # before the signal: ones that leave the group die too
        self.send(self.stop_signal)

    def send(self, signum: int) -> bool:
        """Send a signal the supervisor means (so dying of it is no failure)."""
        if not self.alive:
            return False
        assert self.child is not None
        self._sent.add(signum)
        return self.child.signal_group(signum)

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
        if self.alive:
            await self._gone.wait()

    async def wait_reported(self) -> None:
        """Until its exit was told (after its output drained), when a process ran."""
        if self.child is not None:
            await self._reported.wait()

    async def wait_drained(self) -> None:
        await self._drained.wait()


def _stop_like(rc: int) -> bool:
    """Died of (or exited as a shell reports) a signal that stops whole trees."""
    sig = -rc if rc < 0 else rc - 128 if 128 < rc < 160 else 0
    return sig in _STOP_LIKE


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
