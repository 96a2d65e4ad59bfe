"""The control socket served in-process, driven by real clients: ctl, curl, raw sockets."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.control import SocketInUseError
from tests.control.conftest import Served, ctl, curl
from tests.helpers import config, group, wait_until

IDLE = "import time\nwhile True: time.sleep(3600)"
CHATTY = (
    "import sys, time, os\n"
    "i = 0\n"
    "while True:\n"
    "    print(f'tick {os.environ[\"SUPERVISOR_NAME\"]} {i}', flush=True); i += 1\n"
    "    time.sleep(0.05)\n"
)

Start = Callable[..., Served]


def body_and_code(result: subprocess.CompletedProcess[str]) -> tuple[str, int]:
    body, _, code = result.stdout.rpartition("\n")
    return body, int(code)


def test_socket_mode_status_ready_and_health_over_curl(served: Start, sock_path: str) -> None:
    s = served(config(group("web", IDLE, replicas=3)))
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    body, code = body_and_code(curl(sock_path, "/v1/status"))
    doc = json.loads(body)
    assert code == 200 and [r["name"] for r in doc["replicas"]] == ["web_0", "web_1", "web_2"]
    assert all(r["pid"] == s.status()[r["name"]].pid for r in doc["replicas"])
    assert all(r["uptime"] is not None for r in doc["replicas"])
    assert body_and_code(curl(sock_path, "/healthz"))[1] == 200
    wait_until(lambda: body_and_code(curl(sock_path, "/readyz"))[1] == 200, what="ready")
    assert ctl(sock_path, "ready").returncode == 0


def test_ctl_status_table_json_and_unknown_name(served: Start, sock_path: str) -> None:
    served(config(group("web", IDLE, replicas=2), group("db", IDLE)))
    table = ctl(sock_path, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("NAME") and len(lines) == 4
    assert all(len(line) <= 80 for line in lines) and "\x1b[" not in table.stdout
    only = json.loads(ctl(sock_path, "status", "db", "--json").stdout)
    assert [r["name"] for r in only["replicas"]] == ["db_0"]
    bad = ctl(sock_path, "status", "nope")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "nope" in bad.stderr


def test_restart_signal_and_errors_map_to_statuses(served: Start, sock_path: str) -> None:
    s = served(config(group("web", IDLE, replicas=2)))
    before = s.status()["web_1"].pid
    r = ctl(sock_path, "restart", "web_1")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: s.status()["web_1"].pid not in (None, before), what="new pid")
    assert s.status()["web_0"].restarts == 0
    body, code = body_and_code(curl(sock_path, "/v1/replicas/nope/restart", "-XPOST"))
    assert code == 404 and "nope" in json.loads(body)["error"]
    body, code = body_and_code(curl(sock_path, "/v1/replicas/web_0/signal", "-XPOST", "-d", "{}"))
    assert code == 400 and "signal" in json.loads(body)["error"]
    body, code = body_and_code(curl(sock_path, "/v1/replicas/web_0/restart", "-XPOST", "-d", "{x"))
    assert code == 400
    assert body_and_code(curl(sock_path, "/v1/status", "-XPOST"))[1] == 405
    assert body_and_code(curl(sock_path, "/nothing"))[1] == 404
    assert ctl(sock_path, "signal", "web", "SIGBOGUS").returncode == 2
    unknown = ctl(sock_path, "restart", "nope")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1


def test_signal_reaches_every_replica_of_a_group(
    served: Start, sock_path: str, tmp_path: Path
) -> None:
    code = (
        "import signal, sys, time, os\n"
        f"def h(*a): open(os.path.join({str(tmp_path)!r}, os.environ['SUPERVISOR_NAME']), 'w')\n"
        "signal.signal(signal.SIGUSR1, h)\n"
        "print('armed', flush=True)\n"
        "while True: time.sleep(3600)\n"
    )
    s = served(config(group("sig", code, replicas=2)))
    wait_until(lambda: len(s.call(s.sup.history.last, ["sig_0", "sig_1"], 10)) == 2, what="armed")
    r = ctl(sock_path, "signal", "sig", "SIGUSR1")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: {p.name for p in tmp_path.iterdir()} >= {"sig_0", "sig_1"}, what="handled")


def test_stop_start_and_scale(served: Start, sock_path: str) -> None:
    s = served(config(group("web", IDLE, replicas=2)))
    assert ctl(sock_path, "stop", "web_1").returncode == 0
    wait_until(lambda: s.status()["web_1"].state == "stopped", what="stopped")
    assert s.status()["web_0"].state == "running"
    assert ctl(sock_path, "start", "web_1").returncode == 0
    wait_until(lambda: s.status()["web_1"].state == "running", what="started again")
    r = ctl(sock_path, "scale", "web", "3")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: s.status().get("web_2") is not None, what="scaled up")
    assert ctl(sock_path, "scale", "nope", "3").returncode == 2
    assert ctl(sock_path, "scale", "web", "-1").returncode == 2


def test_tail_last_lines_and_follow_a_group(served: Start, sock_path: str) -> None:
    s = served(config(group("chat", CHATTY, replicas=2)))
    wait_until(lambda: len(s.call(s.sup.history.last, ["chat_1"], 5)) == 5, what="output")
    last = ctl(sock_path, "tail", "-n", "3", "chat_0")
    assert last.returncode == 0 and len(last.stdout.splitlines()) == 3
    assert all(line.startswith("(chat_0 pid=") for line in last.stdout.splitlines())
    # follow: the real client streams until interrupted (SIGINT = Ctrl-C), exit 0
    proc = subprocess.Popen(
        [*ctl_argv(sock_path), "tail", "-f", "-n", "0", "chat"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.stdout is not None
    seen: set[str] = set()
    while len(seen) < 2:
        line = proc.stdout.readline().decode()
        assert line, "tail -f ended early"
        seen.add(line.split()[0])
    proc.send_signal(2)
    assert proc.wait(15) == 0
    assert seen == {"(chat_0", "(chat_1"}


def ctl_argv(sock_path: str) -> list[str]:
    from tests.helpers import PY

    return [PY, "-m", "supervisor", "ctl", "--socket", sock_path]


def test_tcp_listener_serves_only_read_only_endpoints(served: Start, sock_path: str) -> None:
    s = served(config(group("web", IDLE)), listen="127.0.0.1:0")
    base = f"http://127.0.0.1:{s.tcp_port}"

    def get(path: str, *args: str) -> int:
        r = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args, base + path],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return int(r.stdout)

    assert get("/v1/status") == 200 and get("/healthz") == 200 and get("/metrics") == 200
    assert get("/v1/reload", "-XPOST") == 403
    assert get("/v1/replicas/web_0/stop", "-XPOST") == 403
    assert get("/v1/replicas/web_0/output") == 403
    assert s.status()["web_0"].state == "running"


def test_another_user_is_refused(served: Start, sock_path: str) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    served(config(group("web", IDLE)))
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    denied = subprocess.run(
        [
            *as_nobody,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
            sock_path,
            "http://localhost/v1/status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.stdout == "000"  # 0600 in a 0700 directory: connect() is refused
    # Even with the file modes opened up, the peer credentials check answers 403.
    os.chmod(os.path.dirname(sock_path), 0o755)
    os.chmod(sock_path, 0o666)
    refused = subprocess.run(
        [
            *as_nobody,
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            sock_path,
            "-XPOST",
            "http://localhost/v1/replicas/web_0/stop",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, code = body_and_code(refused)
    assert code == 403 and "65534" in json.loads(body)["error"]


def garbage_requests(rng: random.Random) -> list[bytes]:
    good = b"GET /v1/status HTTP/1.1\r\nHost: l\r\n\r\n"
    post = (
        b"POST /v1/groups/web/scale HTTP/1.1\r\nHost: l\r\nContent-Length: 15\r\n\r\n"
        b'{"replicas": 9}'
    )
    out: list[bytes] = []
    for i in range(200):
        kind = i % 8
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 4000)))
        elif kind == 1:
            out.append(good[: rng.randint(1, len(good) - 1)])  # truncated, then closed
        elif kind == 2:
            out.append(post[: rng.randint(1, len(post) - 1)])
        elif kind == 3:
            out.append(b"GET / HTTP/1.1\r\nHost: l\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        elif kind == 4:
            out.append(b"POST /v1/reload HTTP/1.1\r\nHost: l\r\nContent-Length: 999999\r\n\r\n")
        elif kind == 5:
            out.append(
                b"GET /v1/replicas/%s/output?lines=abc HTTP/1.1\r\nHost: l\r\n\r\n"
                % rng.randbytes(8).hex().encode()
            )
        elif kind == 6:
            out.append(b"\r\n" * rng.randint(1, 50) + b"BREW /pot HTCPCP/1.0\r\n\r\n")
        else:
            out.append(
                b"GET /v1/status HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            )
    return out


def test_garbage_and_truncated_requests_never_disturb_the_supervisor(
    served: Start, sock_path: str
) -> None:
    s = served(config(group("web", IDLE, replicas=2)))
    pids = {n: st.pid for n, st in s.status().items()}
    statuses: list[bytes] = []
    for data in garbage_requests(random.Random(10)):
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(15)
            c.connect(sock_path)
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := c.recv(65536):
                reply += chunk
            statuses.append(reply[:12])
    assert not any(st.startswith(b"HTTP/1.1 2") for st in statuses[::8])  # random bytes
    assert b"HTTP/1.1 431" in statuses and b"HTTP/1.1 413" in statuses
    assert b"HTTP/1.1 400" in statuses
    ok = ctl(sock_path, "status", "--json")
    assert ok.returncode == 0
    assert {r["name"]: r["pid"] for r in json.loads(ok.stdout)["replicas"]} == pids
    assert {n: st.pid for n, st in s.status().items()} == pids  # no scale to 9 slipped through


def test_a_tail_client_that_never_reads_does_not_slow_a_flooding_replica(
    served: Start, sock_path: str
) -> None:
    total = 300_000
    flood = (
        "import sys\n"
        "w = sys.stdout.write\n"
        f"for i in range({total}): w(f'flood line {{i:07d}} ' + 'x' * 60 + '\\n')\n"
    )
    s = served(config(group("idle", IDLE), group("flood", flood, restart="never")))
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(sock_path)
    stalled.sendall(b"GET /v1/replicas/flood/output?follow=1&lines=0 HTTP/1.1\r\nHost: l\r\n\r\n")
    try:
        # The flooder writes ~25 MB, far more than the stalled socket's buffers hold;
        # it finishes (it would block forever if the follower applied backpressure).
        wait_until(lambda: s.status()["flood_0"].state == "exited", timeout=120, what="flood done")
        assert s.status()["flood_0"].lines_stdout == total
        assert ctl(sock_path, "status").returncode == 0  # other clients still served
        stalled.settimeout(15)
        got = b""
        while b"lines dropped" not in got and len(got) < 50_000_000:
            chunk = stalled.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        assert b"lines dropped ..." in got
    finally:
        stalled.close()


def test_stale_socket_is_replaced_and_a_live_one_refused(served: Start, sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)  # bound, never listening: what a killed supervisor leaves
    stale.close()
    s = served(config(group("web", IDLE)))
    assert ctl(sock_path, "status").returncode == 0
    second = Served(config(group("other", IDLE)), sock_path)
    with pytest.raises(SocketInUseError, match="another supervisor"):
        second.__enter__()
    second.__exit__(None, None, None)
    assert ctl(sock_path, "status", "--json").returncode == 0
    s.__exit__(None, None, None)
    assert not os.path.exists(sock_path)  # removed on exit


def test_no_supervisor_is_one_line_exit_3(sock_path: str) -> None:
    r = ctl(sock_path, "status")
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1
    assert "no supervisor" in r.stderr and r.stdout == ""
