"""The replica lifecycle: one ``(state, event) -> state`` table that drives.

A replica changes state only through ``next_state``; an event the table does
not list for a state is an engine bug and raises. Requests (stop, restart,
start) are not events of their own kind: they are stored on the replica and
read whenever it next decides (level-triggered), so none is lost when it
arrives mid-transition.
"""

from __future__ import annotations

import enum


class ReplicaState(enum.Enum):
    PENDING = "pending"  # waiting to be spawned (start order, or after a backoff)
    STARTING = "starting"  # spawned, not ready yet
    RUNNING = "running"  # spawned and ready
    STOPPING = "stopping"  # its stop signal was sent
    BACKOFF = "backoff"  # exited; waits before it is spawned again
    STOPPED = "stopped"  # stopped on request; a start request runs it again
    EXITED = "exited"  # done: finished, or stopped with the supervisor
    FAILED = "failed"  # failed and escalated

    @property
    def terminal(self) -> bool:
        return self in (ReplicaState.EXITED, ReplicaState.FAILED)

    @property
    def live(self) -> bool:
        """A process of this replica may exist."""
        return self in (ReplicaState.STARTING, ReplicaState.RUNNING, ReplicaState.STOPPING)


class Event(enum.Enum):
    SPAWNED = "spawned"
    READY = "ready"
    STOP_SENT = "stop_sent"  # a stop or restart request reached a live process
    # What the group decided once a process ended (or could not start):
    RESTART = "restart"
    DONE = "done"
    FAIL = "fail"
    HOLD = "hold"  # stopped on request
    BACKOFF_ELAPSED = "backoff_elapsed"
    START_REQUESTED = "start_requested"
    SHUTDOWN = "shutdown"  # the supervisor stops; a replica not running is done


S, E = ReplicaState, Event
_ENDED = {E.RESTART: S.BACKOFF, E.DONE: S.EXITED, E.FAIL: S.FAILED, E.HOLD: S.STOPPED}
TRANSITIONS: dict[ReplicaState, dict[Event, ReplicaState]] = {
    # A spawn that fails ends like an exit, straight from PENDING.
    S.PENDING: {E.SPAWNED: S.STARTING, **_ENDED, E.SHUTDOWN: S.EXITED},
    S.STARTING: {E.READY: S.RUNNING, E.STOP_SENT: S.STOPPING, **_ENDED},
    S.RUNNING: {E.STOP_SENT: S.STOPPING, **_ENDED},
    S.STOPPING: {**_ENDED},
    S.BACKOFF: {E.BACKOFF_ELAPSED: S.PENDING, E.HOLD: S.STOPPED, E.SHUTDOWN: S.EXITED},
    S.STOPPED: {E.START_REQUESTED: S.PENDING, E.SHUTDOWN: S.EXITED},
    S.EXITED: {E.START_REQUESTED: S.PENDING},
    S.FAILED: {},
}


class IllegalTransition(RuntimeError):
    """A bug in the engine: it fired an event the table does not allow in that state."""


def next_state(state: ReplicaState, event: Event) -> ReplicaState:
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(
            f"replica in state {state.value} cannot take event {event.value}"
        ) from None
