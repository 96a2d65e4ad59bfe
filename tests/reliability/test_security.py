"""Item 8: argv never a shell, validated wrapper lists, nothing private leaks, privilege drop."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PY, REPO, toml_config
from tests.serve_process import Serve

DOCUMENTED = {
    "SUPERVISOR_GROUP",
    "SUPERVISOR_NAME",
    "SUPERVISOR_INDEX",
    "SUPERVISOR_REPLICAS",
    "SUPERVISOR_NODE_RANK",
    "SUPERVISOR_RANK",
    "SUPERVISOR_WORLD_SIZE",
    "SUPERVISOR_RUN_ID",  # serve only: how the guard finds the replicas' descendants
}


def _check_json(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "supervisor", "check", str(cfg), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_is_argv_never_a_shell(tmp_path: Path, no_leaks_sync: None) -> None:
    evil = "$HOME; touch pwned && echo `id` | tee pwned2"
    cfg = toml_config(
        tmp_path,
        [{"name": "e", "command": ["/bin/echo", evil], "restart": "never", "cwd": str(tmp_path)}],
    )
    with Serve(cfg) as serve:
        assert serve.finish() == 0
    assert f") {evil}\n" in serve.out
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_wrapper_gets_only_validated_cpu_and_node_lists(tmp_path: Path) -> None:
    cfg = toml_config(
        tmp_path,
        [{"name": "b", "command": ["/bin/true"], "replicas": 2}],
        extra='[topology]\nstrategy = "cores"\n',
    )
    done = _check_json(cfg)
    assert done.returncode == 0, done.stderr
    for rep in json.loads(done.stdout)["replicas"]:
        argv = rep["argv"]
        sep = argv.index("--")
        assert os.path.basename(argv[0]) in ("numactl", "taskset")
        assert argv[sep + 1 :] == ["/bin/true"]
        for arg in argv[1:sep]:
            assert re.fullmatch(r"(--(physcpubind|membind|preferred)=|-c|)[0-9,-]*", arg), argv
    for bad in ('cpus = "0;touch /tmp/pwned"', 'nodes = "0 && id"', 'cpus = "0-1 --all"'):
        bad_cfg = toml_config(
            tmp_path,
            [{"name": "b", "command": ["/bin/true"]}],
            extra=f'[topology]\nstrategy = "cores"\n{bad}\n',
        )
        done = _check_json(bad_cfg)
        assert done.returncode == 2, (bad, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and "topology" in done.stderr


def test_nothing_private_leaks_into_replicas(tmp_path: Path, no_leaks_sync: None) -> None:
    """A replica sees our env (less PLACEVISOR_*) plus the documented variables, fds 0-2."""
    report = (
        "import json, os; print(json.dumps({'env': dict(os.environ),"
        " 'fds': sorted(int(f) for f in os.listdir('/proc/self/fd'))}))"
    )
    cfg = toml_config(
        tmp_path,
        [{"name": "r", "command": [PY, "-c", report], "restart": "never", "env": {"MINE": "1"}}],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env["PLACEVISOR_SECRET_TEST"] = "x"  # the supervisor's own settings: never passed on
    env["USER_VAR_TEST"] = "y"  # the user's environment: passed on
    with Serve(cfg, env=env) as serve:
        assert serve.finish() == 0
    line = serve.out.split(") ", 1)[1]
    seen = json.loads(line)
    added = set(seen["env"]) - set(env)
    assert added <= DOCUMENTED | {"MINE"}, added - DOCUMENTED
    assert "PLACEVISOR_SECRET_TEST" not in seen["env"]
    passed = {k: v for k, v in env.items() if not k.startswith("PLACEVISOR_")}
    assert {k: seen["env"].get(k) for k in passed} == passed
    # 3 is the directory listing itself; the guard's pipe and our pipes are not there.
    assert seen["fds"] == [0, 1, 2, 3]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_group_and_umask_when_root(tmp_path: Path, no_leaks_sync: None) -> None:
    show = "id -u; id -g; id -G; umask"
    cfg = toml_config(
        tmp_path,
        [
            {
                "name": "u",
                "command": ["/bin/sh", "-c", show],
                "restart": "never",
                "user": "nobody",
                "umask": 0o027,
            }
        ],
    )
    with Serve(cfg) as serve:
        assert serve.finish() == 0
    lines = [ln.split(") ", 1)[1] for ln in serve.out.splitlines()]
    import pwd

    pw = pwd.getpwnam("nobody")
    assert lines[0] == str(pw.pw_uid)
    assert lines[1] == str(pw.pw_gid)  # the user's own group, not root's
    assert "0" not in lines[2].split()  # root's supplementary groups are gone
    assert lines[3] == "0027"


@pytest.mark.skipif(os.geteuid() != 0, reason="setpriv --reuid needs root")
def test_user_switch_refused_when_not_root(tmp_path: Path) -> None:
    """Run as uid 65534, keeping only the capability to read files (python lives in /root)."""
    cfg = toml_config(tmp_path, [{"name": "u", "command": ["/bin/true"], "user": "nobody"}])
    caps = "+dac_read_search,+dac_override"
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            f"--inh-caps={caps}",
            f"--ambient-caps={caps}",
            PY,
            "-m",
            "supervisor",
            "serve",
            str(cfg),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs the supervisor to run as root" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
