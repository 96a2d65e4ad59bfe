"""`serve` as a real subprocess with its control socket: ctl -c, top in tmux, SIGHUP reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.control.conftest import Served, ctl
from tests.helpers import PY, REPO, config, group, wait_until
from tests.serve_process import Serve

IDLE = ["import time\nwhile True: time.sleep(3600)"]


def write_config(path: Path, sock: str, replicas: int = 3, command: str = IDLE[0]) -> None:
    path.write_text(
        f'[control]\nsocket = "{sock}"\n\n'
        f'[[group]]\nname = "web"\nreplicas = {replicas}\n'
        f'command = [{json.dumps(PY)}, "-c", {json.dumps(command)}]\n'
        '\n[[group]]\nname = "worker_with_a_rather_long_group_name"\n'
        f'command = [{json.dumps(PY)}, "-c", {json.dumps(command)}]\n'
    )


@pytest.fixture
def running(sock_path: str, tmp_path: Path) -> Iterator[tuple[Serve, Path]]:
    cfg = tmp_path / "svc.toml"
    write_config(cfg, sock_path)
    serve = Serve(cfg)
    try:
        wait_until(
            lambda: os.path.exists(sock_path) or serve.proc.poll() is not None,
            timeout=20,
            what="control socket",
        )
        assert serve.proc.poll() is None, serve.err
        yield serve, cfg
    finally:
        serve.signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.err
    assert not os.path.exists(sock_path)


def ctl_c(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "supervisor", "ctl", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )


def names(sock: str) -> dict[str, dict[str, object]]:
    r = ctl(sock, "status", "--json")
    assert r.returncode == 0, r.stderr
    return {x["name"]: x for x in json.loads(r.stdout)["replicas"]}


def test_serve_makes_the_socket_and_ctl_c_finds_it(
    running: tuple[Serve, Path], sock_path: str
) -> None:
    _, cfg = running
    r = ctl_c(cfg, "status")
    assert r.returncode == 0, r.stderr
    assert {"web_0", "web_1", "web_2"} <= {line.split()[0] for line in r.stdout.splitlines()}
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    wait_until(lambda: ctl(sock_path, "ready").returncode == 0, what="ready")


def test_second_serve_on_a_live_socket_exits_2(running: tuple[Serve, Path], tmp_path: Path) -> None:
    _, cfg = running
    second = subprocess.run(
        [PY, "-m", "supervisor", "serve", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert second.returncode == 2
    assert "another supervisor" in second.stderr and "Traceback" not in second.stderr


def test_sighup_with_a_broken_file_changes_nothing_then_a_good_one_scales(
    running: tuple[Serve, Path], sock_path: str
) -> None:
    serve, cfg = running
    before = {n: r["pid"] for n, r in names(sock_path).items()}
    good = cfg.read_text()
    cfg.write_text(good.replace("replicas = 3", "replicas = 'three'"))
    serve.signal(signal.SIGHUP)
    serve.wait_for("reload_failed", stream="err")
    assert {n: r["pid"] for n, r in names(sock_path).items()} == before
    bad = ctl(sock_path, "reload")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    cfg.write_text(good.replace("replicas = 3", "replicas = 4"))
    assert ctl(sock_path, "reload").returncode == 0
    wait_until(lambda: "web_3" in names(sock_path), what="scaled by reload")
    after = {n: r["pid"] for n, r in names(sock_path).items()}
    assert all(after[n] == pid for n, pid in before.items())  # untouched replicas keep pids


def test_top_in_tmux_shows_every_replica_and_q_quits(
    served: Callable[..., Served], sock_path: str
) -> None:
    served(
        config(
            group("web", IDLE[0], replicas=3),
            group("worker_with_a_rather_long_group_name", IDLE[0]),
        )
    )
    if shutil.which("tmux") is None:
        pytest.skip("tmux missing: apt-get install tmux (listed in .ci/apt-packages)")
    session = f"pvtop-{uuid.uuid4().hex[:8]}"
    cmd = (
        f"unset COLUMNS LINES; PYTHONPATH={REPO} {PY} -m supervisor ctl --socket {sock_path} top;"
        " echo TOP-EXIT=$?"
    )
    subprocess.run(
        [
            "tmux",
            "-L",
            session,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "40",
            "sh",
            "-c",
            cmd + "; sleep 60",
        ],
        check=True,
        timeout=30,
    )

    def pane() -> str:
        return subprocess.run(
            ["tmux", "-L", session, "capture-pane", "-p", "-t", session],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    try:
        wanted = [
            "web_0",
            "web_1",
            "web_2",
            "worker_with_a_rather_long_group_name_0",
            "CPU%",
            "RSS",
            "NUMA%",
        ]
        try:
            wait_until(lambda: all(w in pane() for w in wanted), timeout=30, what="top drawn")
        except AssertionError:
            raise AssertionError(f"top did not show {wanted}:\n{pane()}") from None
        wait_until(lambda: "running" in pane(), what="states shown")
        subprocess.run(
            ["tmux", "-L", session, "send-keys", "-t", session, "q"], check=True, timeout=30
        )
        wait_until(lambda: "TOP-EXIT=0" in pane(), timeout=15, what="top quit on q")
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, timeout=30)


def test_ctl_without_a_supervisor_is_one_line_exit_3(tmp_path: Path) -> None:
    cfg = tmp_path / "nothing.toml"
    write_config(cfg, str(tmp_path / "absent.sock"))
    r = ctl_c(cfg, "status")
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no supervisor" in r.stderr
