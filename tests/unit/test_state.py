"""The replica state machine: every legal move allowed, every other one raises."""

from __future__ import annotations

import itertools

import pytest

from supervisor.state import TRANSITIONS, IllegalTransition, ReplicaState, check_transition

S = ReplicaState
LEGAL = {
    (S.PENDING, S.STARTING), (S.PENDING, S.EXITED),
    (S.STARTING, S.RUNNING), (S.STARTING, S.BACKOFF), (S.STARTING, S.FAILED),
    (S.STARTING, S.EXITED),
    (S.RUNNING, S.STOPPING), (S.RUNNING, S.BACKOFF), (S.RUNNING, S.EXITED),
    (S.RUNNING, S.FAILED),
    (S.STOPPING, S.BACKOFF), (S.STOPPING, S.EXITED), (S.STOPPING, S.FAILED),
    (S.BACKOFF, S.STARTING), (S.BACKOFF, S.EXITED), (S.BACKOFF, S.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)), ids=str)
def test_transition_table(old: ReplicaState, new: ReplicaState) -> None:
    if (old, new) in LEGAL:
        check_transition(old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {old.value} to {new.value}"):
            check_transition(old, new)


def test_every_state_has_a_row_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {s for s in S if s.terminal} == {S.EXITED, S.FAILED}
    assert all(not TRANSITIONS[s] for s in S if s.terminal)
