"""RestartBudget decisions with fake clocks: modes, doubling, cap, window reset."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor import GroupConfig
from supervisor.policy import BACKOFF_CAP, Done, Escalate, Restart, RestartBudget


def budget(**kw: Any) -> RestartBudget:
    return RestartBudget(GroupConfig(name="g", command=("true",), **kw))


@pytest.mark.parametrize(
    ("mode", "failed", "want"),
    [
        ("never", False, Done),
        ("never", True, Escalate),
        ("on-failure", False, Done),
        ("on-failure", True, Restart),
        ("always", False, Restart),
        ("always", True, Restart),
    ],
)
def test_restart_modes(mode: str, failed: bool, want: type) -> None:
    assert isinstance(budget(restart=mode).decide(failed=failed, now=0.0), want)


def test_backoff_doubles_then_escalates_after_max_restarts() -> None:
    b = budget(max_restarts=4, backoff=0.5, restart_window=60.0)
    got = [b.decide(failed=True, now=float(t)) for t in range(4)]
    assert got == [Restart(0.5, 1), Restart(1.0, 2), Restart(2.0, 3), Restart(4.0, 4)]
    final = b.decide(failed=True, now=4.0)
    assert isinstance(final, Escalate)
    assert "max_restarts = 4" in final.reason and "60 s" in final.reason


def test_backoff_is_capped_at_30_seconds() -> None:
    b = budget(max_restarts=20, backoff=1.0)
    delays = [d.delay for d in (b.decide(failed=True, now=t * 0.01) for t in range(10))]
    assert isinstance(delays[0], float)
    assert max(delays) == BACKOFF_CAP == 30.0
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_zero_backoff_restarts_at_once() -> None:
    b = budget(backoff=0.0)
    assert b.decide(failed=True, now=0.0) == Restart(0.0, 1)
    assert b.decide(failed=True, now=0.1) == Restart(0.0, 2)


def test_window_resets_count_and_backoff() -> None:
    b = budget(max_restarts=2, backoff=1.0, restart_window=10.0)
    assert b.decide(failed=True, now=0.0) == Restart(1.0, 1)
    assert b.decide(failed=True, now=1.0) == Restart(2.0, 2)
    # Ran for a whole window since the last restart: a clean slate.
    assert b.decide(failed=True, now=11.0) == Restart(1.0, 1)
    assert b.in_window(11.0) == 1


def test_window_slides_one_restart_at_a_time() -> None:
    b = budget(max_restarts=2, backoff=1.0, restart_window=10.0)
    b.decide(failed=True, now=0.0)
    b.decide(failed=True, now=5.0)
    assert isinstance(b.decide(failed=True, now=9.9), Escalate)
    assert b.decide(failed=True, now=10.0) == Restart(2.0, 2)  # the restart at 0 left the window


def test_exit_zero_under_always_is_done_when_the_budget_is_used() -> None:
    b = budget(restart="always", max_restarts=1)
    assert isinstance(b.decide(failed=False, now=0.0), Restart)
    assert b.decide(failed=False, now=0.1) == Done()
    assert isinstance(b.decide(failed=True, now=0.2), Escalate)


def test_max_restarts_zero_escalates_the_first_failure() -> None:
    assert isinstance(budget(max_restarts=0).decide(failed=True, now=0.0), Escalate)


def test_one_budget_per_group_counts_each_decision_once() -> None:
    """A group-scope restart asks once; every replica of the group shares the budget."""
    b = budget(replicas=3, restart_scope="group", max_restarts=1)
    assert b.decide(failed=True, now=0.0) == Restart(0.5, 1)
    assert b.in_window(0.0) == 1
    assert isinstance(b.decide(failed=True, now=0.1), Escalate)
