"""The lifecycle table: every listed move works, everything else raises."""

from __future__ import annotations

import pytest

from supervisor.state import TRANSITIONS, Event, IllegalTransition, ReplicaState, next_state

S, E = ReplicaState, Event


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ReplicaState)


@pytest.mark.parametrize("state", list(ReplicaState))
@pytest.mark.parametrize("event", list(Event))
def test_unlisted_events_raise(state: ReplicaState, event: Event) -> None:
    if event in TRANSITIONS[state]:
        assert next_state(state, event) is TRANSITIONS[state][event]
    else:
        with pytest.raises(IllegalTransition, match=f"{state.value}.*{event.value}"):
            next_state(state, event)


def test_a_whole_life() -> None:
    path = [E.SPAWNED, E.READY, E.STOP_SENT, E.RESTART, E.BACKOFF_ELAPSED, E.SPAWNED, E.DONE]
    state = S.PENDING
    seen = []
    for event in path:
        state = next_state(state, event)
        seen.append(state)
    assert seen == [S.STARTING, S.RUNNING, S.STOPPING, S.BACKOFF, S.PENDING, S.STARTING, S.EXITED]


def test_failed_is_final_and_exited_can_start_again() -> None:
    assert TRANSITIONS[S.FAILED] == {}
    assert next_state(S.EXITED, E.START_REQUESTED) is S.PENDING
    assert next_state(S.STOPPED, E.START_REQUESTED) is S.PENDING


def test_a_stop_request_while_backing_off_holds_it() -> None:
    assert next_state(S.BACKOFF, E.HOLD) is S.STOPPED
    assert next_state(S.BACKOFF, E.SHUTDOWN) is S.EXITED


def test_live_and_terminal() -> None:
    assert {s for s in S if s.live} == {S.STARTING, S.RUNNING, S.STOPPING}
    assert {s for s in S if s.terminal} == {S.EXITED, S.FAILED}
