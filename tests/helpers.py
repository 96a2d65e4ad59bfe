"""Helpers for real-process tests: deadlines instead of sleeps, token scans."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil

from supervisor import Config, GroupConfig, SupervisorSettings

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def group(name: str, code: str, **kw: Any) -> GroupConfig:
    """A group whose replicas run ``python -c code``."""
    return GroupConfig(name=name, command=(PY, "-c", code), **kw)


def config(*groups: GroupConfig, shutdown_timeout: float = 5.0, **kw: Any) -> Config:
    return Config(
        groups=tuple(groups),
        supervisor=SupervisorSettings(shutdown_timeout=shutdown_timeout, color="never"),
        base_dir=REPO,
        **kw,
    )


async def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``cond`` with a deadline, re-checking on short checkpoints."""
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)
    assert cond(), what


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        time.sleep(0.01)


def procs_with(token: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose argv contains ``token``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(token in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.Error:
            continue
    return found


def split_lines(data: bytes) -> Sequence[bytes]:
    return [line for line in data.split(b"\n") if line]
