"""A group runner: owns its replicas and their tasks, and applies the restart policy.

Replicas report how their process ended; the group decides (restart, done,
escalate) with its ``RestartBudget``, runs group-scope restarts, and changes
its own size when the supervisor reconciles a new desired count. It asks the
supervisor only through the narrow ``Owner`` interface.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from .allocator import PlaceAllocator
from .config import GroupConfig
from .errors import NoFreePlaceError
from .output import Stream
from .plan import Planner, ReplicaPlan
from .policy import Done, Escalate, RestartBudget
from .replica import Outcome, Replica
from .state import Event


class Owner(Protocol):
    """What a group needs from the supervisor."""

    log: Any
    drain_timeout: float
    stopping: bool

    def prefix(self, replica: Replica, pid: int) -> bytes: ...
    async def write(self, replica: Replica, pid: int, stream: Stream, data: bytes) -> None: ...
    async def flushed(self, stream: Stream) -> None: ...
    def socket_fds(self, names: tuple[str, ...]) -> tuple[int, ...]: ...
    def notify_socket(self) -> str: ...
    @property
    def child_nofile(self) -> tuple[int, int] | None: ...
    def escalate(self, replica: Replica, cause: str, reason: str) -> None: ...
    async def stop_requested(self) -> None: ...
    async def dependencies_ready(self, group: GroupRunner) -> None: ...
    def dependencies_met(self, group: GroupRunner) -> bool: ...
    def changed(self, replica: Replica) -> None: ...
    def verify(self, replica: Replica) -> None: ...
    def next_color(self) -> int: ...
    def shutdown_timeout(self) -> float: ...


class GroupRunner:
    def __init__(
        self,
        owner: Owner,
        config: GroupConfig,
        planner: Planner,
        allocator: PlaceAllocator,
    ) -> None:
        self.owner = owner
        self.config = config
        self.name = config.name
        self.planner = planner
        self.allocator = allocator
        self.budget = RestartBudget(config)
        self.replicas: dict[int, Replica] = {}
        self._tg: TaskGroup | None = None
        self._close = anyio.Event()
        self._gate: anyio.Event | None = None  # closed while a group-scope restart runs

    # -- the Host interface its replicas see ---------------------------------
    @property
    def log(self) -> Any:
        return self.owner.log

    @property
    def drain_timeout(self) -> float:
        return self.owner.drain_timeout

    @property
    def stopping(self) -> bool:
        return self.owner.stopping

    def prefix(self, replica: Replica, pid: int) -> bytes:
        return self.owner.prefix(replica, pid)

    async def write(self, replica: Replica, pid: int, stream: Stream, data: bytes) -> None:
        await self.owner.write(replica, pid, stream, data)

    async def flushed(self, stream: Stream) -> None:
        await self.owner.flushed(stream)

    def socket_fds(self, names: tuple[str, ...]) -> tuple[int, ...]:
        return self.owner.socket_fds(names)

    def notify_socket(self) -> str:
        return self.owner.notify_socket()

    def shutdown_timeout(self) -> float:
        return self.owner.shutdown_timeout()

    @property
    def child_nofile(self) -> tuple[int, int] | None:
        return self.owner.child_nofile

    def start_task(self, fn: object, *args: object) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn, *args)  # type: ignore[arg-type]

    async def stop_requested(self) -> None:
        await self.owner.stop_requested()

    def changed(self, replica: Replica) -> None:
        self.owner.changed(replica)

    def verify(self, replica: Replica) -> None:
        self.owner.verify(replica)

    def may_start_now(self, replica: Replica) -> bool:
        """The common case, answered without waiting: no gate closed, dependencies ready."""
        return self._gate is None and self.owner.dependencies_met(self)

    async def may_start(self, replica: Replica) -> None:
        await self.owner.dependencies_ready(self)
        gate = self._gate
        if gate is not None:
            await gate.wait()

    def decide(self, replica: Replica, *, failed: bool, cause: str) -> Outcome:
        """The restart policy, applied where the group's whole picture is known."""
        if self.owner.stopping:
            return Outcome(Event.DONE)
        if replica.want == "remove":
            return Outcome(Event.DONE)
        if replica.want == "stop":
            return Outcome(Event.HOLD)
        if replica.want == "restart":
            # An operator's restart, or this replica's part in a group restart:
            # not a failure, so the budget is not asked.
            replica.want = "run"
            return Outcome(Event.RESTART)
        decision = self.budget.decide(failed=failed, now=anyio.current_time())
        if isinstance(decision, Done):
            return Outcome(Event.DONE)
        if isinstance(decision, Escalate):
            self.owner.escalate(replica, cause, decision.reason)
            return Outcome(Event.FAIL)
        self.owner.log.warning(
            "replica_restarting",
            replica=replica.name,
            delay=round(decision.delay, 3),
            restart=decision.count,
            max_restarts=self.config.max_restarts,
            cause=cause,
        )
        if self.config.restart_scope == "group":
            self._restart_others(replica, decision.delay)
        return Outcome(Event.RESTART, decision.delay)

    def _restart_others(self, initiator: Replica, delay: float) -> None:
        """Stop every other live replica; all start again once the initiator's delay is over."""
        gate = anyio.Event()
        self._gate = gate
        others = [r for r in self.replicas.values() if r is not initiator and r.state.live]
        for r in others:
            r.request("restart", timeout=self.owner.shutdown_timeout())

        async def reopen() -> None:
            with anyio.move_on_after(self.owner.shutdown_timeout() + 5.0):
                for r in others:
                    await r.wait_gone()
            await anyio.sleep(delay)
            if self._gate is gate:
                self._gate = None
            gate.set()

        self.start_task(reopen)

    # -- running ---------------------------------------------------------------
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the group's task group open until the group is closed."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await self._close.wait()
        self._tg = None

    def close(self) -> None:
        """Let ``run`` return once every task of the group has ended."""
        self._close.set()

    def add(self, plan: ReplicaPlan) -> Replica:
        replica = Replica(self, self.config, plan, self.owner.next_color())
        self.replicas[plan.index] = replica
        self.start_task(self._run_replica, replica)
        return replica

    async def _run_replica(self, replica: Replica) -> None:
        try:
            await replica.run()
        finally:
            if replica.want == "remove" and self.replicas.get(replica.index) is replica:
                del self.replicas[replica.index]
                if replica.plan.place is not None:
                    self.allocator.give(replica.plan.place)
                self.owner.changed(replica)

    def relaunch(self, replica: Replica) -> None:
        """Run an exited replica's lifecycle again (a start request after it was done)."""
        replica.finished = anyio.Event()
        replica.fire(Event.START_REQUESTED)
        self.start_task(self._run_replica, replica)

    def plan_replica(self, index: int, replicas: int) -> ReplicaPlan:
        """Plan replica ``index``, taking a free place when the group binds."""
        place = None
        if self.planner.binds(self.config):
            place = self.allocator.take(f"{self.name}_{index}")
        return self.planner.replica(self.config, index, replicas, place)

    def scale_to(self, n: int) -> None:
        """Reconcile the count: add the missing indexes, remove the highest ones.

        Raises NoFreePlaceError before changing anything when a bound group
        would need more places than are free.
        """
        live = sorted(i for i, r in self.replicas.items() if r.want != "remove")
        extra = [i for i in live if i >= n]
        missing = [i for i in range(n) if i not in self.replicas]
        if self.planner.binds(self.config):
            free = self.allocator.free_count()
            if len(missing) > free:
                raise NoFreePlaceError(
                    f"group {self.name!r}: {n} replicas need {len(missing)} more places "
                    f"but {free} are free; nothing changed"
                )
        for i in extra:
            self.replicas[i].request("remove", timeout=self.owner.shutdown_timeout())
        for i in missing:
            self.add(self.plan_replica(i, n))

    def active(self) -> list[Replica]:
        return [r for _, r in sorted(self.replicas.items()) if r.want != "remove"]
