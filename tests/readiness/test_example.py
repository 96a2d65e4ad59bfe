"""examples/api_pool.toml: it checks, and it runs: engine first, then the API pool on one socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import PY, REPO, wait_until
from tests.readiness._load import free_port
from tests.serve_process import Serve

EXAMPLE = REPO / "examples" / "api_pool.toml"


def test_check_passes_from_another_directory(tmp_path: Path) -> None:
    r = subprocess.run(
        [PY, "-m", "supervisor", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # relative paths are the config's, not the caller's
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    assert "group api: ready 'line:Uvicorn running on'" in r.stdout
    assert "after engine; sockets http (fd 3)" in r.stdout
    assert f"cwd:  {REPO / 'examples'}" in r.stdout
    assert "--fd 3" in r.stdout


@pytest.mark.slow
def test_the_pool_runs_engine_first_then_serves_on_the_shared_socket(tmp_path: Path) -> None:
    """A copy of the example on a free port, with this interpreter as python3."""
    port = free_port()
    for name in ("engine_worker.py", "api_app.py"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    text = EXAMPLE.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    text = text.replace('"python3"', json.dumps(PY))
    text = text.replace("[supervisor]\n", '[supervisor]\nlog_format = "json"\n')
    text += f'\n[control]\nsocket = "{tmp_path / "ctl.sock"}"\n'
    cfg = tmp_path / "api_pool.toml"
    cfg.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with Serve(cfg, env=env) as serve:
        serve.wait_for("Uvicorn running on", count=2, timeout=60, stream="err")
        seen: set[str] = set()

        def both_answered() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                seen.add(json.loads(resp.read())["replica"])
            return seen == {"api_0", "api_1"}

        wait_until(both_answered, 30, "both API servers answering on the shared port")
        events = serve.events()
        at = {(e["event"], e.get("replica")): i for i, e in reversed(list(enumerate(events)))}
        assert at[("replica_ready", "engine_0")] < at[("replica_started", "api_0")]
        assert at[("replica_ready", "engine_0")] < at[("replica_started", "api_1")]
        serve.signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.err[-3000:]
    assert "engine_0: stopped" in serve.out
