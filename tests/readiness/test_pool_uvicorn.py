"""Four real uvicorn servers behind one shared socket, under real load (wrk).

A rolling restart of the group refuses no connection, times none out and
answers every request 2xx; a SIGKILLed server refuses none either (the
requests it held may fail: counted). Every server answered some requests.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.readiness._load import Wrk, need_wrk
from tests.readiness._serve_pool import ctl, pool, replicas, uvicorn_command
from tests.serve_process import Serve

pytestmark = pytest.mark.slow

LOAD_SECONDS = 12


@pytest.fixture(scope="module")
def uvicorn_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, Path, int]]:
    need_wrk()
    with pool(tmp_path_factory.mktemp("uvicorn"), uvicorn_command()) as running:
        yield running


def test_rolling_restart_under_load_refuses_nothing(
    uvicorn_pool: tuple[Serve, Path, int], tmp_path: Path
) -> None:
    serve, sock, port = uvicorn_pool
    before = {r["name"]: r["pid"] for r in replicas(sock)}
    wrk = Wrk(f"http://127.0.0.1:{port}/", LOAD_SECONDS, tmp_path)
    try:
        wrk.wait_connected(port)
        r = ctl(sock, "restart", "--rolling", "api")
        assert r.returncode == 0, r.stdout + r.stderr
        assert wrk.running, "the rolling restart outlasted the load: it was not measured whole"
        result = wrk.result()
    finally:
        wrk.kill()
    after = {r["name"]: r["pid"] for r in replicas(sock)}
    print(f"\nrolling restart under load: {result.summary()}")
    assert all(after[name] != pid for name, pid in before.items()), (before, after)
    assert result.requests > 1000, result.text
    assert (result.connect, result.timeout, result.non_2xx) == (0, 0, 0), result.text
    assert result.write == 0, result.text
    # uvicorn closes connections it accepted but had not read a request from yet
    # when it stops (server.shutdown): those are wrk's read errors, a handful.
    assert result.read < result.requests / 100, result.text
    assert set(result.served) == {"api_0", "api_1", "api_2", "api_3"}, result.served
    # One at a time: each successor was ready before the next one stopped.
    order = [
        (e["event"], e["replica"])
        for e in serve.events()
        if e.get("event") in ("replica_exited", "replica_ready") and e["replica"] in before
    ][-8:]
    assert order == [
        (event, name)
        for name in ("api_0", "api_1", "api_2", "api_3")
        for event in ("replica_exited", "replica_ready")
    ], order


def test_sigkill_of_one_server_refuses_no_connection(
    uvicorn_pool: tuple[Serve, Path, int], tmp_path: Path
) -> None:
    serve, sock, port = uvicorn_pool
    victim = next(r for r in replicas(sock) if r["name"] == "api_2")
    wrk = Wrk(f"http://127.0.0.1:{port}/", LOAD_SECONDS, tmp_path)
    try:
        wrk.wait_connected(port)
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(
            lambda: any(
                r["name"] == "api_2" and r["pid"] not in (None, victim["pid"]) and r["ready"]
                for r in replicas(sock)
            ),
            30,
            "api_2 restarted and ready",
        )
        assert wrk.running, "the restart outlasted the load"
        result = wrk.result()
    finally:
        wrk.kill()
    print(f"\nSIGKILL of api_2 under load: {result.summary()} (failed: in flight on api_2)")
    assert result.requests > 1000, result.text
    assert (result.connect, result.timeout, result.non_2xx) == (0, 0, 0), result.text
    # Only what the killed server held can fail; 2xx answers came from all four.
    assert result.read + result.write < 100, result.text
    assert set(result.served) == {"api_0", "api_1", "api_2", "api_3"}, result.served
    exits = [e for e in serve.events("replica_exited") if e.get("pid") == victim["pid"]]
    assert exits and exits[0]["exit_code"] == -signal.SIGKILL, exits
