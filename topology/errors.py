"""Errors raised by the topology package: all are ValueErrors carrying advice."""

from __future__ import annotations


class TopologyError(ValueError):
    """A machine description or a placement request that cannot be honoured."""


class CpuListError(TopologyError):
    """Text that is not a Linux CPU list (``0-3,8,10-11``)."""
