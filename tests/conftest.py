"""Shared fixtures: event-loop backends, leak checks, deadline waits.

Engine tests run on asyncio, uvloop and trio through anyio's pytest plugin;
``PLACEVISOR_TEST_BACKENDS=asyncio,trio`` narrows the set (tox uses it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psutil
import pytest

_ALL = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
_CHOSEN = [
    b.strip()
    for b in os.environ.get("PLACEVISOR_TEST_BACKENDS", "asyncio,uvloop,trio").split(",")
    if b.strip()
]


@pytest.fixture(params=[pytest.param(_ALL[b], id=b) for b in _CHOSEN])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """Fail an async test that leaves a child process or an fd behind.

    Async so that it measures inside the running event loop (whose own fds
    are not a leak).
    """
    with _leak_check():
        yield


@pytest.fixture
def no_leaks_sync() -> Iterator[None]:
    """The same check for tests that run the CLI as a subprocess."""
    with _leak_check():
        yield


@contextlib.contextmanager
def _leak_check() -> Iterator[None]:
    fds_before = len(os.listdir("/proc/self/fd"))
    kids_before = _descendants()
    yield
    leftover = _descendants() - kids_before
    alive = []
    for pid in leftover:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(proc.cmdline())}")
            else:
                alive.append(f"{pid} <zombie>")
        except psutil.Error:
            continue
        proc.kill()
    assert not alive, f"processes left behind: {alive}"
    fds_after = len(os.listdir("/proc/self/fd"))
    assert fds_after <= fds_before, f"fd leak: {fds_before} -> {fds_after}"
