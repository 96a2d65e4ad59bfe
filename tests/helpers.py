"""Helpers for real-process tests: deadlines instead of sleeps, token scans."""

from __future__ import annotations

import json
import os
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
#: Added to a stop deadline in waits: scheduling on a loaded 2-core CI machine.
STOP_SLACK = 2.0


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


def toml_config(
    tmp: Path,
    groups: Sequence[dict[str, Any]],
    *,
    shutdown_timeout: float = 5.0,
    extra: str = "",
    name: str = "serve.toml",
) -> Path:
    """Write a ``serve`` config file: the one TOML builder of the suite.

    Values are JSON-encoded (valid TOML for strings, lists, numbers, booleans);
    a dict value becomes an inline table. The log is JSON, so ``Serve.events``
    can read it. ``extra`` is appended to ``[supervisor]`` (or adds tables).
    """
    parts = [
        "[supervisor]",
        f"shutdown_timeout = {shutdown_timeout}",
        'log_format = "json"',
        'color = "never"',
        extra,
    ]
    for g in groups:
        parts.append("[[group]]")
        for key, value in g.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                parts.append(f"{key} = {{ {inner} }}")
            else:
                parts.append(f"{key} = {json.dumps(value)}")
    path = tmp / name
    path.write_text("\n".join(parts) + "\n")
    return path


def script(tmp: Path, name: str, code: str) -> str:
    """Write a Python script for a replica to run; its path."""
    path = tmp / name
    path.write_text(code)
    return str(path)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``cond`` with a deadline, re-checking on short checkpoints."""
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)
    assert cond(), what


def path_without(root: Path, *missing: str) -> str:
    """A PATH of links to every program on this PATH except ``missing``: a machine without
    them, for the fallbacks CI would otherwise never run (no numactl, no setpriv)."""
    bin_dir = root / ("bin-without-" + "-".join(missing))
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            link = bin_dir / entry.name
            if entry.name in missing or link.exists() or link.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    assert not any((bin_dir / name).exists() for name in missing)
    return str(bin_dir)


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
