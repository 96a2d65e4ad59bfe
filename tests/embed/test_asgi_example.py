"""examples/asgi_app.py served by a real uvicorn, driven over HTTP and by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.embed.util import STATUS_FIELDS, TREE, token
from tests.helpers import REPO, procs_with, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def served(
    tmp_path: Path, no_leaks_sync: None
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    """uvicorn serving the example with two TREE workers marked by a token."""
    tok = token()
    cfg = tmp_path / "workers.toml"
    cfg.write_text(
        '[supervisor]\nshutdown_timeout = 5.0\ncolor = "never"\n\n'
        '[[group]]\nname = "w"\nreplicas = 2\n'
        f"command = {json.dumps([sys.executable, '-c', TREE, tok])}\n"
    )
    port = _free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.asgi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env={**os.environ, "PLACEVISOR_CONFIG": str(cfg)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _accepts(port) or proc.poll() is not None, 20, "uvicorn listening")
        assert proc.poll() is None, log.read_text()
        yield proc, f"http://127.0.0.1:{port}", tok, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _workers(client: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = client.get("/workers")
    assert resp.status_code == 200
    return {rec["name"]: rec for rec in resp.json()}


def _cmdline_has(pid: int, tok: str) -> bool:
    try:
        return tok in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def test_example_under_uvicorn(
    served: tuple[subprocess.Popen[bytes], str, str, Path],
) -> None:
    proc, url, tok, log = served
    with httpx.Client(base_url=url, timeout=10) as client:
        workers = _workers(client)
        assert sorted(workers) == ["w_0", "w_1"]
        for rec in workers.values():
            assert rec["state"] == "running"
            assert set(rec) >= STATUS_FIELDS
            assert _cmdline_has(rec["pid"], tok)
            assert psutil.Process(rec["pid"]).ppid() == proc.pid
        # Each worker started a grandchild: four processes carry the token.
        wait_until(lambda: len(procs_with(tok)) == 4, 10, "workers and grandchildren")

        old = workers["w_0"]["pid"]
        resp = client.post("/workers/w_0/restart")
        assert resp.status_code == 202, resp.text

        def restarted() -> bool:
            rec = _workers(client)["w_0"]
            return rec["state"] == "running" and rec["pid"] not in (None, old)

        wait_until(restarted, 10, "w_0 restarted")
        now = _workers(client)
        assert now["w_0"]["restarts"] == 1 and _cmdline_has(now["w_0"]["pid"], tok)
        assert now["w_1"]["pid"] == workers["w_1"]["pid"]
        wait_until(lambda: not _cmdline_has(old, tok), 10, "old w_0 gone")

        assert client.post("/workers/nobody/restart").status_code == 404

    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    text = log.read_text()
    # uvicorn >= 0.29 re-raises the signal it caught once its shutdown is
    # complete (so it dies of SIGTERM); older ones exit 0. Either way only
    # after the lifespan, and so the supervisor, finished.
    assert proc.returncode in (0, -signal.SIGTERM), text
    assert "Application shutdown complete." in text, text
    assert "event='shutdown_complete' exit_status=0" in text, text
    assert procs_with(tok) == []
