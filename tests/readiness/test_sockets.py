"""``[[socket]]``: bound before anything starts, passed as fds 3, 4, ...; nothing else leaks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.helpers import PY, REPO, toml_config
from tests.readiness._load import free_port
from tests.serve_process import Serve

#: What a replica was given: its open fds (the listing's own fd is closed by then),
#: the systemd variables, and what fd 3 and 4 are; then READY=1 to the supervisor.
REPORT = """
import json, os, socket, sys, time
listed = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
fds = [fd for fd in listed if is_open(fd)]
names = {}
for fd in fds[3:]:
    s = socket.socket(fileno=os.dup(fd))
    names[fd] = [s.family.name, list(s.getsockname()) if s.family != socket.AF_UNIX
                 else s.getsockname(), s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
    s.close()
env = {k: os.environ.get(k) for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
print("REPORT " + json.dumps({"pid": os.getpid(), "fds": fds, "sockets": names, "env": env,
                              "argv": sys.argv[1:]}), flush=True)
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
n.close()
time.sleep(120)
"""


def reports(out: str) -> list[dict[str, object]]:
    return [json.loads(m) for m in re.findall(r"REPORT (\{.*\})", out)]


def test_replicas_get_their_sockets_as_3_4_and_no_other_fd(tmp_path: Path) -> None:
    a, b = free_port(), free_port()
    unix = tmp_path / "app.sock"
    extra = (
        f'[control]\nsocket = "{tmp_path / "ctl.sock"}"\n\n'
        f'[[socket]]\nname = "web"\nlisten = "127.0.0.1:{a}"\n\n'
        f'[[socket]]\nname = "admin"\nlisten = "127.0.0.1:{b}"\n\n'
        f'[[socket]]\nname = "local"\nlisten = "unix:{unix}"\n'
    )
    cfg = toml_config(
        tmp_path,
        [
            {"name": "two", "command": [PY, "-c", REPORT, "--admin-fd", "{fd:admin}"],
             "replicas": 2, "bind": False, "sockets": ["web", "admin"], "ready": "notify"},
            {"name": "none", "command": [PY, "-c", REPORT], "bind": False, "ready": "notify"},
        ],
        extra=extra,
    )  # fmt: skip
    with Serve(cfg) as serve:
        serve.wait_for("REPORT", count=3)
        two = [r for r in reports(serve.out) if r["argv"]]
        none = [r for r in reports(serve.out) if not r["argv"]]
        assert len(two) == 2 and len(none) == 1, serve.out
        for r in two:
            # fds 0-2, then the group's sockets in its order; nothing of the supervisor's
            # (control socket, notify socket, log pipes, epoll, the unused unix socket).
            assert r["fds"] == [0, 1, 2, 3, 4], r
            assert r["sockets"] == {
                "3": ["AF_INET", ["127.0.0.1", a], 1],
                "4": ["AF_INET", ["127.0.0.1", b], 1],
            }, r
            assert r["env"] == {
                "LISTEN_FDS": "2",
                "LISTEN_PID": str(r["pid"]),
                "LISTEN_FDNAMES": "web:admin",
            }, r
            assert r["argv"] == ["--admin-fd", "4"], r
        assert none[0]["fds"] == [0, 1, 2], none
        assert none[0]["env"] == {"LISTEN_FDS": None, "LISTEN_PID": None, "LISTEN_FDNAMES": None}
        assert unix.exists()
        serve.signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.err[-3000:]
    assert not unix.exists(), "the supervisor removes its unix socket at exit"


def test_a_port_in_use_is_one_line_exit_2_and_nothing_starts(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    marker = tmp_path / "started"
    extra = (
        f'[[socket]]\nname = "web"\nlisten = "127.0.0.1:{port}"\n\n'
        f'[[socket]]\nname = "free"\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    code = f"open({str(marker)!r}, 'w').close()"
    cfg = toml_config(
        tmp_path,
        [{"name": "api", "command": [PY, "-c", code], "bind": False, "sockets": ["web"]}],
        extra=extra,
    )
    try:
        r = subprocess.run(
            [PY, "-m", "supervisor", "serve", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        taken.close()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "'web'" in lines[0] and f"127.0.0.1:{port}" in lines[0], lines[0]
    assert "in use" in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not marker.exists(), "a replica started although a socket could not be bound"
