"""``python -m supervisor serve`` end to end, signalled as systemd would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import psutil

from supervisor.replica import KILL_WAIT
from tests.helpers import PY, REPO, STOP_SLACK, procs_with, wait_until
from tests.serve_process import Serve


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def sleeper_config(tmp_path: Path, token: str, *, replicas: int = 3, extra: str = "") -> Path:
    # Each replica forks a grandchild and says ready; both carry the token in argv.
    code = (
        "import subprocess,sys,time; "
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{token}']); "
        "print('ready', flush=True); time.sleep(300)"
    )
    return write(
        tmp_path,
        f"""
[supervisor]
shutdown_timeout = 2.0
{extra}
[[group]]
name = "w"
command = ["{PY}", "-c", "{code}", "{token}"]
replicas = {replicas}
""",
    )


def test_sigterm_stops_everything_and_exits_0(tmp_path: Path, no_leaks_sync: None) -> None:
    token = f"tok-{uuid.uuid4()}"
    serve = Serve(sleeper_config(tmp_path, token))
    serve.wait_for("ready", count=3)
    wait_until(lambda: len(procs_with(token)) == 6, 5, "3 replicas and 3 grandchildren")
    serve.signal(signal.SIGTERM)
    # A deadline on the wait, not a timing assertion: timeout + 1 s + scheduling slack.
    assert serve.finish(timeout=2.0 + 1.0 + STOP_SLACK) == 0
    wait_until(lambda: not procs_with(token), 2, "every replica and grandchild gone")
    assert "shutdown_complete" in serve.err


def test_second_sigint_kills_at_once(tmp_path: Path, no_leaks_sync: None) -> None:
    token = f"tok-{uuid.uuid4()}"
    code = (
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    cfg = write(
        tmp_path,
        f"""
[supervisor]
shutdown_timeout = 30.0
[[group]]
name = "stubborn"
command = ["{PY}", "-c", "{code}", "{token}"]
replicas = 2
""",
    )
    serve = Serve(cfg)
    serve.wait_for("ready", count=2)
    serve.signal(signal.SIGINT)
    serve.wait_for("shutdown_started", stream="err")
    serve.signal(signal.SIGINT)
    # The second signal must not wait out the 30 s timeout.
    assert serve.finish(timeout=KILL_WAIT + STOP_SLACK) == 0
    assert not procs_with(token)
    assert "second stop request" in serve.err


def test_escalation_exits_1_naming_replica_and_code(tmp_path: Path, no_leaks_sync: None) -> None:
    token = f"tok-{uuid.uuid4()}"
    cfg = write(
        tmp_path,
        f"""
[supervisor]
shutdown_timeout = 2.0
log_format = "json"
[[group]]
name = "ok"
command = ["{PY}", "-c", "import time; print('ready', flush=True); time.sleep(300)", "{token}"]
[[group]]
name = "bad"
command = ["{PY}", "-c", "import sys; print('bye', flush=True); sys.exit(3)"]
restart = "never"
""",
    )
    serve = Serve(cfg)
    assert serve.finish() == 1
    events = [json.loads(line) for line in serve.err.splitlines()]  # every line is JSON
    escalated = [e for e in events if e["event"] == "group_escalated"]
    assert escalated and escalated[0]["replica"] == "bad_0" and escalated[0]["exit_code"] == 3
    assert "(bad_0 pid=" in serve.out and "bye" in serve.out
    assert not procs_with(token)


def test_all_done_exits_0_and_output_has_no_escape_codes(
    tmp_path: Path, no_leaks_sync: None
) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.stdout.write('last')"
    cfg = write(
        tmp_path,
        f"""
[supervisor]
color = "auto"
[[group]]
name = "one"
command = ["{PY}", "-c", "{code}"]
replicas = 2
""",
    )
    serve = Serve(cfg)
    assert serve.finish() == 0
    assert "\x1b" not in serve.out and "\x1b" not in serve.err
    for i in (0, 1):
        assert f"(one_{i} pid=" in serve.out
    assert serve.out.count(") last\n") == 2
    assert serve.err.count(") err\n") == 2


def test_color_always_gives_each_replica_its_own_colour(
    tmp_path: Path, no_leaks_sync: None
) -> None:
    cfg = write(
        tmp_path,
        f"""
[supervisor]
color = "always"
[[group]]
name = "c"
command = ["{PY}", "-c", "print('x')"]
replicas = 2
""",
    )
    serve = Serve(cfg)
    assert serve.finish() == 0
    codes = {line.split("(")[0] for line in serve.out.splitlines()}
    assert len(codes) == 2 and all(code.startswith("\x1b[") for code in codes)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "supervisor", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_bad_config_is_one_line_exit_2_nothing_started(tmp_path: Path) -> None:
    token = f"tok-{uuid.uuid4()}"
    cfg = write(
        tmp_path,
        f"""
[[group]]
name = "a"
command = ["{PY}", "-c", "import time; time.sleep(60)", "{token}"]
[[group]]
name = "b"
command = ["{PY}"]
replicas = 0
""",
    )
    result = run_cli("serve", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(cfg) in lines[0] and "replicas" in lines[0]
    assert "Traceback" not in result.stderr
    assert not procs_with(token)


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in ([], ["serve"], ["bogus"], ["check"], ["serve", "/nonexistent.toml"]):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_check_json_schema() -> None:
    result = run_cli("check", "examples/demo.toml", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    names = [r["name"] for r in plan["replicas"]]
    assert names == ["compute_0", "compute_1", "api_0"]
    for r in plan["replicas"]:
        assert set(r) == {"name", "group", "index", "argv", "env", "cpus", "nodes", "removed_env"}
        if r["group"] == "compute":
            assert r["cpus"] and r["argv"][0] in ("numactl", "taskset")
            assert r["env"]["OMP_PROC_BIND"] == "close"
        else:
            assert r["cpus"] == [] and r["nodes"] == [] and "OMP_PLACES" not in r["env"]


def test_topology_subcommand_runs() -> None:
    result = run_cli("topology", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)
    bad = run_cli("topology", "--lscpu", "/nonexistent")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_demo_runs_to_completion(no_leaks_sync: None) -> None:
    serve = Serve(REPO / "examples" / "demo.toml")
    assert serve.finish(60) == 0
    assert serve.out.count(": done") == 2


def test_one_sigterm_beside_sigchlds_is_a_graceful_stop(tmp_path: Path) -> None:
    # systemd's KillMode=control-group signals the supervisor and every replica
    # at once, so SIGCHLDs land beside the one SIGTERM (here also a replica
    # stopped just before). It must stay one graceful stop, never a "second
    # signal" forced kill: uvloop's own signal handlers can dispatch such a
    # SIGTERM twice; ours go through a self-pipe.
    code = (
        "import signal,sys,os,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
        "os.write(1, b'ready\\\\n'); time.sleep(60)"
    )
    cfg = write(
        tmp_path,
        f"""
[supervisor]
shutdown_timeout = 0.3
[[group]]
name = "w"
command = ["{PY}", "-c", "{code}"]
replicas = 3
""",
    )
    for _ in range(4):
        serve = Serve(cfg)
        serve.wait_for("ready", count=3)
        first = next(p for p in psutil.Process(serve.proc.pid).children() if "-c" in p.cmdline())
        others = [p for p in psutil.Process(serve.proc.pid).children() if p.pid != first.pid]
        os.kill(first.pid, signal.SIGSTOP)
        wait_until(lambda p=first: p.status() == psutil.STATUS_STOPPED, 5, "replica stopped")
        targets = [serve.proc.pid, *(p.pid for p in others if "-c" in p.cmdline())]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):  # it may already be stopping
                os.kill(pid, signal.SIGTERM)
        assert serve.finish() == 0
        assert "shutdown_forced" not in serve.err, serve.err
        assert "second stop request" not in serve.err, serve.err


def test_closed_stdout_reader_does_not_kill_the_supervisor(tmp_path: Path) -> None:
    # `serve cfg.toml | head -1`: the reader goes away; the replicas keep running
    # to completion, the supervisor says so once and exits 0 (no traceback).
    code = "import time\nfor i in range(40):\n    print(i, flush=True); time.sleep(0.01)"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f'[[group]]\nname = "w"\ncommand = {json.dumps([PY, "-c", code])}\nrestart = "never"\n'
    )
    proc = subprocess.Popen(
        [PY, "-m", "supervisor", "serve", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().endswith(b" 0\n")
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"output_closed" in err and b"Traceback" not in err
    assert b"exited with code 0" in err
