"""Typed errors: one base class users can catch, and one subclass per kind of refusal.

The control socket maps each class to an HTTP status in one table, so the
classes say what went wrong, not where.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """Base of every error the supervisor raises on purpose."""


class UnknownReplicaError(SupervisorError, KeyError):
    """No replica or group has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownGroupError(UnknownReplicaError):
    """No group has that name."""


class NoFreePlaceError(SupervisorError):
    """A bound group asked for more places than are free; nothing changed."""


class NotRunningError(SupervisorError, ProcessLookupError):
    """The replica is not running (it cannot take a signal now)."""


class StoppingError(SupervisorError):
    """The supervisor is stopping and takes no new requests."""


class RollingRestartError(SupervisorError):
    """A successor in a rolling restart did not become ready; the roll stopped there."""
