"""The Supervisor: groups of replicas under one task group, stopped in bounded phases.

Embedding is the default: no signal handler, no ``sys.exit``, no logging
configuration. The CLI adds those around the same object.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, BinaryIO, TextIO

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .config import Config, GroupConfig
from .exits import parse_signal
from .output import (
    ChannelSink,
    OutputLine,
    OutputSink,
    RecordSink,
    StreamSink,
    make_prefix,
    use_color,
)
from .plan import LaunchPlan
from .policy import RestartBudget
from .replica import DRAIN_TIMEOUT, KILL_WAIT, Replica, ReplicaStatus
from .state import ReplicaState

EXIT_OK = 0
EXIT_ESCALATED = 1


class _Group:
    def __init__(self, sup: Supervisor, config: GroupConfig) -> None:
        self.sup = sup
        self.config = config
        self.budget = RestartBudget(config)
        self.replicas: list[Replica] = []
        self._gate = anyio.Event()

    async def restart_others(self, initiator: Replica) -> None:
        """Stop every other live replica of the group; they wait on the gate."""
        self._gate = anyio.Event()
        others = [r for r in self.replicas if r is not initiator and r.alive]
        for r in others:
            r._gate = self._gate
        async with anyio.create_task_group() as tg:
            for r in others:
                tg.start_soon(r.stop_alone, self.sup.config.supervisor.shutdown_timeout)

    def open_gate(self) -> None:
        self._gate.set()


class Supervisor:
    """Start every group of a ``Config``, supervise, and stop them, inside any anyio host.

    ``async with Supervisor(config) as sup`` returns once every replica was
    started; leaving the block stops them all, shielded from cancellation.
    Without ``async with``, call ``await sup.start()`` and later
    ``await sup.stop()`` from the same task: ``start`` opens a task group in
    the calling task (as a nursery does) and ``stop`` closes it there.
    """

    def __init__(
        self,
        config: Config,
        *,
        plan: LaunchPlan | None = None,
        stdout: TextIO | BinaryIO | None = None,
        stderr: TextIO | BinaryIO | None = None,
        on_output: Callable[[OutputLine], Awaitable[None] | None] | None = None,
        color: bool | None = None,
        logger: Any = None,
        environ: Mapping[str, str] | None = None,
        drain_timeout: float = DRAIN_TIMEOUT,
        line_buffer: int | None = None,
    ) -> None:
        self.config = config
        self._plan = plan
        self._environ = dict(os.environ if environ is None else environ)
        self.log = logger if logger is not None else structlog.get_logger("supervisor")
        self.sink: OutputSink = (
            RecordSink(on_output)
            if on_output is not None
            else StreamSink(stdout, stderr, on_closed=self._output_closed)
        )
        self._channel: ChannelSink | None = None
        if line_buffer is not None:
            if on_output is not None or stdout is not None or stderr is not None:
                raise ValueError("give line_buffer or on_output or stdout/stderr, not several")
            self._channel = ChannelSink(line_buffer)
            self.sink = self._channel
        if color is None:
            color = use_color(
                config.supervisor.color, stdout if stdout is not None else sys.stdout, self._environ
            )
        self._color = color and self.sink.prefixed
        self.drain_timeout = drain_timeout
        self.groups: list[_Group] = []
        self.replicas: list[Replica] = []
        self.stopping = False
        self.exit_status = EXIT_OK
        self._tg: TaskGroup | None = None
        self._outer: TaskGroup | None = None
        self._live = 0
        self._all_finished = anyio.Event()
        self._stop_requested = anyio.Event()
        self._force = anyio.Event()
        self._shutdown_done = anyio.Event()
        self._finished = anyio.Event()
        self._started = False
        self._owner: int | None = None

    # -- public API ---------------------------------------------------------
    @property
    def plan(self) -> LaunchPlan:
        if self._plan is None:
            from .numaprobe import NumactlProbe
            from .plan import build_plan

            self._plan = build_plan(self.config, environ=self._environ, probe=NumactlProbe())
            for warning in self._plan.warnings:
                self.log.warning("plan_warning", message=warning)
        return self._plan

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()  # shielded inside; closes the task group that start opened

    async def _close_outer(self) -> None:
        """Exit the task group entered by ``start`` (every task in it has ended)."""
        outer, self._outer = self._outer, None
        if outer is not None:
            await outer.__aexit__(None, None, None)

    async def start(self) -> None:
        """Start every group; return once each replica has been spawned."""
        if self._started:
            raise RuntimeError("this Supervisor was already started")
        self._started = True
        plan = self.plan
        self._owner = anyio.get_current_task().id
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            # Shielded: on trio, ``started()`` inside a cancelled caller does not
            # hand the task over, and ``start`` would wait for it forever.
            with anyio.CancelScope(shield=True):
                await self._outer.start(self._run, plan)
            await anyio.lowlevel.checkpoint_if_cancelled()  # a host cancelled meanwhile
        except BaseException:
            self.request_stop()
            await self._wait_finished()
            await self._close_outer()
            raise

    async def wait(self) -> int:
        """Wait until every replica is done or stopped; return serve's exit status."""
        if not self._started:
            raise RuntimeError("start the Supervisor first (async with, or await start())")
        await self._finished.wait()
        return self.exit_status

    async def stop(self, *, force: bool = False) -> int:
        """Stop every replica (stop signal, grace, SIGKILL of the trees) and wait.

        Called from the task that called ``start``, it also closes the task
        group that ``start`` opened; from another task it only waits.
        """
        if not self._started:
            return self.exit_status
        self.request_stop(force=force)
        pierced = await self._wait_finished()
        if self._outer is not None and anyio.get_current_task().id == self._owner:
            await self._close_outer()
        if pierced is not None:
            raise pierced
        return self.exit_status

    async def _wait_finished(self) -> BaseException | None:
        """Wait, shielded, until the stop is complete.

        asyncio's ``Task.cancel()`` pierces anyio's shields, so a host that
        cancels its task twice would leave mid-stop with replicas alive; such a
        cancellation is held back and returned, for the caller to re-raise once
        everything is stopped.
        """
        pierced: BaseException | None = None
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    await self._finished.wait()
                return pierced
            except anyio.get_cancelled_exc_class() as exc:
                pierced = exc

    def request_stop(self, *, force: bool = False) -> None:
        """Begin stopping without waiting (what a signal handler calls)."""
        if force:
            self._force.set()
        self._stop_requested.set()

    def lines(self) -> MemoryObjectReceiveStream[OutputLine]:
        """The replicas' output as ``OutputLine`` records (needs ``line_buffer=N``).

        ``async for rec in sup.lines():`` ends once the supervisor has finished
        and the buffered lines were read. At most N lines wait unread; then the
        replicas block on their writes until the host reads (backpressure).
        One reader; closing it discards the lines that follow.
        """
        if self._channel is None:
            raise RuntimeError("lines() needs Supervisor(config, line_buffer=N)")
        self._channel.claimed = True
        return self._channel.receive

    def status(self) -> list[ReplicaStatus]:
        return [r.status() for r in self.replicas]

    def _replica(self, name: str) -> Replica:
        for r in self.replicas:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.replicas)
        raise KeyError(f"no replica named {name!r} (replicas: {known})")

    async def signal(self, name: str, signum: int | str) -> None:
        """Send a signal to one replica's process group."""
        sig = parse_signal(signum) if isinstance(signum, str) else signum
        replica = self._replica(name)
        if not replica.send(int(sig)):
            raise ProcessLookupError(f"replica {name!r} is not running ({replica.state.value})")

    async def restart(self, name: str) -> ReplicaStatus:
        """Stop one replica (bounded), start it again in its place, and return its status.

        Returns once the new process was spawned (or its spawn failed), so
        the status carries the new pid. A manual restart does not count
        toward ``max_restarts``: it is an operator's decision, not a failure.
        """
        replica = self._replica(name)
        if self.stopping:
            raise RuntimeError("the supervisor is stopping")
        if replica.state.terminal:
            raise RuntimeError(f"replica {name!r} has {replica.state.value}; it cannot restart")
        respawned = replica.spawn_attempted
        if replica.alive:
            replica._manual_restart = True
            await replica.stop_alone(self.config.supervisor.shutdown_timeout)
        else:
            replica.wake()
        with anyio.move_on_after(self.drain_timeout + 5.0):
            await respawned.wait()
        return replica.status()

    def managed_pids(self) -> set[int]:
        """Pids of running replicas (their own waiters reap them)."""
        return {r.child.pid for r in self.replicas if r.child is not None and r.alive}

    # -- internals ----------------------------------------------------------
    def _output_closed(self, stream: str, why: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr may be the closed one
            self.log.warning(
                "output_closed",
                stream=stream,
                reason=f"{why}; replica output to {stream} is dropped from now on, "
                "the replicas keep running",
            )

    def prefix_for(self, replica: Replica, pid: int) -> bytes:
        if not self.sink.prefixed:
            return b""
        return make_prefix(replica.name, pid, replica.color_index if self._color else None)

    def spawn_task(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    def replica_finished(self, replica: Replica) -> None:
        self._live -= 1
        if self._live == 0:
            self._all_finished.set()

    def escalate(self, replica: Replica, cause: str, reason: str) -> None:
        self.exit_status = EXIT_ESCALATED
        self.log.error(
            "group_escalated",
            group=replica.plan.group,
            replica=replica.name,
            pid=replica.child.pid if replica.child else None,
            cause=cause,
            reason=reason,
            exit_code=replica.last_returncode,
        )
        self.request_stop()

    async def _run(self, plan: LaunchPlan, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """``_main``, then end ``lines()`` however it ended."""
        try:
            await self._main(plan, task_status=task_status)
        finally:
            if self._channel is not None:
                self._channel.close()

    async def _main(
        self, plan: LaunchPlan, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            # Shielded: the host's cancel scopes end the host's code, not the
            # replicas; they stop through stop(), which __aexit__ always calls.
            with anyio.CancelScope(shield=True):
                await self._supervise_all(plan, task_status=task_status)
        except BaseException:
            # An engine bug or a host cancellation: never leave a replica behind.
            for r in self.replicas:
                r.kill()
            raise
        finally:
            self._finished.set()

    async def _supervise_all(self, plan: LaunchPlan, *, task_status: Any) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            by_name = {g.name: _Group(self, g) for g in self.config.groups}
            self.groups = list(by_name.values())
            for color, rp in enumerate(plan.replicas):
                group = by_name[rp.group]
                replica = Replica(self, group, rp, color)
                group.replicas.append(replica)
                self.replicas.append(replica)
            self._live = len(self.replicas)
            if not self.replicas:
                self._all_finished.set()
            tg.start_soon(self._watch_stop)
            for replica in self.replicas:
                if self._stop_requested.is_set():
                    replica.state = ReplicaState.EXITED
                    self.replica_finished(replica)
                    continue
                error = replica.start()
                tg.start_soon(replica.supervise, error)
            task_status.started()
            await self._all_finished.wait()
            with anyio.CancelScope(shield=True):
                if self._stop_requested.is_set():
                    await self._shutdown_done.wait()
                await self._final_drain()
            tg.cancel_scope.cancel()

    async def _watch_stop(self) -> None:
        async with anyio.create_task_group() as tg:

            async def done() -> None:
                await self._all_finished.wait()
                tg.cancel_scope.cancel()

            async def stop() -> None:
                await self._stop_requested.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(done)
            tg.start_soon(stop)
        if self._stop_requested.is_set():
            with anyio.CancelScope(shield=True):
                await self._shutdown()
        self._shutdown_done.set()

    async def _shutdown(self) -> None:
        """Phase 1 stop signal; 2 one shared deadline; 3 SIGKILL trees; 4 reap."""
        self.stopping = True
        timeout = self.config.supervisor.shutdown_timeout
        live = [r for r in self.replicas if r.alive]
        self.log.info("shutdown_started", replicas=len(live), timeout=timeout)
        for r in self.replicas:
            r.wake()
        for r in live:
            r.begin_stop()
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:

                async def forced() -> None:
                    await self._force.wait()
                    tg.cancel_scope.cancel()

                async def all_gone() -> None:
                    for r in live:
                        await r.wait_gone()
                    tg.cancel_scope.cancel()

                tg.start_soon(forced)
                tg.start_soon(all_gone)
        for r in self.replicas:
            if r.kill():
                why = (
                    "second stop request"
                    if self._force.is_set()
                    else f"ignored {r.stop_signal.name} for {timeout:g} s"
                )
                self.log.warning(
                    "replica_killed",
                    replica=r.name,
                    pid=r.child.pid if r.child else None,
                    reason=f"{why}; sent SIGKILL to its process tree",
                )
        with anyio.move_on_after(KILL_WAIT):
            for r in live:
                await r.wait_gone()

    async def _final_drain(self) -> None:
        """Let the last lines through (bounded), then report completion."""
        for r in self.replicas:
            r.kill_strays()  # nothing of ours outlives the supervisor
        with anyio.move_on_after(self.drain_timeout):
            for r in self.replicas:
                await r.wait_drained()
        if self.stopping:
            self.log.info("shutdown_complete", exit_status=self.exit_status)
