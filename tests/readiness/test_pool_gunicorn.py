"""Four real gunicorn servers behind one shared socket: a rolling restart under load.

gunicorn adopts the socket from ``LISTEN_FDS`` by itself (``LISTEN_PID`` is
its own pid after our exec shim) and tells ``READY=1`` to the supervisor's
NOTIFY_SOCKET; no ``--bind``, no ``--fd``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readiness._load import Wrk, need_wrk
from tests.readiness._serve_pool import ctl, gunicorn_command, pool, replicas

pytestmark = pytest.mark.slow


def test_gunicorn_rolling_restart_under_load_has_no_error(tmp_path: Path) -> None:
    need_wrk()
    with pool(tmp_path, gunicorn_command(), ready="notify") as (serve, sock, port):
        before = {r["name"]: r["pid"] for r in replicas(sock)}
        assert all(r["status_text"] == "Gunicorn arbiter booted" for r in replicas(sock))
        wrk = Wrk(f"http://127.0.0.1:{port}/", 12, tmp_path)
        try:
            wrk.wait_connected(port)
            r = ctl(sock, "restart", "--rolling", "api")
            assert r.returncode == 0, r.stdout + r.stderr
            assert wrk.running, "the rolling restart outlasted the load"
            result = wrk.result()
        finally:
            wrk.kill()
        after = {r["name"]: r["pid"] for r in replicas(sock)}
        # Each gunicorn adopted our socket (none bound its default 127.0.0.1:8000).
        said = serve.out + serve.err
        assert said.count(f"Listening at: http://127.0.0.1:{port} ") >= 8, said[-3000:]
        assert "127.0.0.1:8000" not in said
    print(f"\ngunicorn rolling restart under load: {result.summary()}")
    assert all(after[name] != pid for name, pid in before.items()), (before, after)
    assert result.requests > 1000, result.text
    assert (result.connect, result.read, result.write, result.timeout) == (0, 0, 0, 0), result.text
    assert result.non_2xx == 0, result.text
    assert set(result.served) == {"api_0", "api_1", "api_2", "api_3"}, result.served
