"""A ``serve`` of N real HTTP servers behind one ``[[socket]]``, driven by ``ctl``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import PY, REPO, toml_config, wait_until
from tests.readiness._load import free_port
from tests.serve_process import Serve

EXAMPLES = REPO / "examples"


def ctl(sock: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real ``python -m supervisor ctl`` client."""
    return subprocess.run(
        [PY, "-m", "supervisor", "ctl", "--socket", str(sock), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )


def replicas(sock: Path) -> list[dict[str, Any]]:
    r = ctl(sock, "status", "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["replicas"])


def uvicorn_command() -> list[str]:
    return [
        PY, "-m", "uvicorn", "api_app:app", "--app-dir", str(EXAMPLES),
        "--fd", "{fd:http}", "--no-access-log",
    ]  # fmt: skip


def gunicorn_command() -> list[str]:
    """gunicorn adopts LISTEN_FDS itself (LISTEN_PID is its pid) and sends READY=1."""
    import gunicorn.config

    argv = [
        PY, "-m", "gunicorn", "api_app:wsgi", "--chdir", str(EXAMPLES),
        "--workers", "1", "--worker-class", "gthread", "--threads", "8",
        "--graceful-timeout", "5",
    ]  # fmt: skip
    if hasattr(gunicorn.config, "ControlSocketDisable"):
        argv.append("--no-control-socket")  # gunicorn >= 24: one per replica would clash
    return argv


@contextmanager
def pool(
    tmp: Path,
    command: Sequence[str],
    *,
    replicas: int = 4,
    ready: str = "line:Uvicorn running on",
    backlog: int = 4096,
) -> Iterator[tuple[Serve, Path, int]]:
    """``serve`` with ``replicas`` servers sharing one socket; (serve, ctl socket, port)."""
    port = free_port()
    sock = tmp / "ctl.sock"
    extra = (
        f'[control]\nsocket = "{sock}"\n\n'
        f'[[socket]]\nname = "http"\nlisten = "127.0.0.1:{port}"\nbacklog = {backlog}\n'
    )
    cfg = toml_config(
        tmp,
        [
            {
                "name": "api",
                "command": list(command),
                "replicas": replicas,
                "sockets": ["http"],
                "bind": False,
                "ready": ready,
                "ready_timeout": 30.0,
            }
        ],
        extra=extra,
        shutdown_timeout=10.0,
    )
    with Serve(cfg) as serve:
        wait_until(sock.exists, 20, "the control socket")
        wait_until(lambda: ctl(sock, "ready").returncode == 0, 60, "every server ready")
        try:
            yield serve, sock, port
        finally:
            serve.signal(signal.SIGTERM)
            assert serve.finish() == 0, serve.err[-4000:]
