"""Restart decisions, pure: what to do when a replica exits.

One ``RestartBudget`` per group counts restarts inside a sliding window, so a
replica that has run for ``restart_window`` starts again with a clean slate.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from .config import GroupConfig

BACKOFF_CAP = 30.0


@dataclass(frozen=True, slots=True)
class Done:
    """The replica finished; it will not run again."""


@dataclass(frozen=True, slots=True)
class Restart:
    delay: float
    count: int


@dataclass(frozen=True, slots=True)
class Escalate:
    reason: str


Decision = Done | Restart | Escalate


class RestartBudget:
    """Restarts of one group within ``restart_window``; a group restart counts once."""

    def __init__(self, group: GroupConfig) -> None:
        self._group = group
        self._times: collections.deque[float] = collections.deque()

    def in_window(self, now: float) -> int:
        window = self._group.restart_window
        while self._times and now - self._times[0] >= window:
            self._times.popleft()
        return len(self._times)

    def decide(self, *, failed: bool, now: float) -> Decision:
        """``failed``: non-zero exit, or a signal the supervisor did not send."""
        g = self._group
        if not failed and g.restart != "always":
            return Done()
        if failed and g.restart == "never":
            return Escalate('restart = "never"')
        used = self.in_window(now)
        if used >= g.max_restarts:
            if not failed:
                return Done()
            return Escalate(
                f"max_restarts = {g.max_restarts} used up within {g.restart_window:g} s"
            )
        self._times.append(now)
        n = used + 1
        delay = min(g.backoff * 2 ** (n - 1), BACKOFF_CAP) if g.backoff > 0 else 0.0
        return Restart(delay=delay, count=n)
