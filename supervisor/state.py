"""The replica state machine: one transition table, illegal moves raise."""

from __future__ import annotations

import enum


class ReplicaState(enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    EXITED = "exited"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (ReplicaState.EXITED, ReplicaState.FAILED)


S = ReplicaState
TRANSITIONS: dict[ReplicaState, frozenset[ReplicaState]] = {
    S.PENDING: frozenset({S.STARTING, S.EXITED}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FAILED, S.EXITED}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.EXITED, S.FAILED}),
    S.STOPPING: frozenset({S.BACKOFF, S.EXITED, S.FAILED}),
    S.BACKOFF: frozenset({S.STARTING, S.EXITED, S.FAILED}),
    # Terminal: the replica's task has ended; nothing revives it.
    S.EXITED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug in the engine: it tried a move the table does not allow."""


def check_transition(old: ReplicaState, new: ReplicaState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"replica cannot go from {old.value} to {new.value}")
