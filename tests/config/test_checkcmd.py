"""``check`` output: the text for people, the JSON schema for machines, the probe."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from supervisor.check import render_json, render_text, run_check
from supervisor.config import Config, GroupConfig, TopologySettings
from supervisor.numaprobe import NumactlProbe
from supervisor.plan import build_plan
from topology import Topology

DATA = Path(__file__).resolve().parent / "data"
ROOT = DATA.parent.parent.parent
UBICLOUD = DATA / "ubicloud_lscpu-Jye_2socket_2numa_6core_12thread_string-fields_unsorted.json"


def bound_config() -> Config:
    return Config(
        groups=(
            GroupConfig(name="engine", command=("python", "w.py", "--rank", "{index}"), replicas=2),
            GroupConfig(name="web", command=("sh", "-c", "echo 'hi there'"), bind=False),
        ),
        topology=TopologySettings(strategy="nodes", numa="bind"),
        base_dir=DATA,
        source="demo.toml",
    )


def plan_for(config: Config):  # type: ignore[no-untyped-def]
    return build_plan(
        config,
        topology=Topology.from_file(UBICLOUD),
        environ={"PATH": "/bin", "PLACEVISOR_X": "1"},
        which=lambda name: "/usr/bin/" + name,
    )


def test_json_schema() -> None:
    data = json.loads(render_json(plan_for(bound_config())))
    assert list(data) == ["replicas"]
    first, second, web = data["replicas"]
    assert list(first) == ["name", "group", "index", "argv", "env", "cpus", "nodes", "removed_env"]
    assert first["removed_env"] == []
    assert first["name"] == "engine_0" and first["group"] == "engine" and first["index"] == 0
    assert first["argv"] == [
        "numactl", "--physcpubind=0,2,6", "--membind=0", "--", "python", "w.py", "--rank", "0",
    ]  # fmt: skip
    assert first["env"] == {
        "SUPERVISOR_GROUP": "engine",
        "SUPERVISOR_NAME": "engine_0",
        "SUPERVISOR_INDEX": "0",
        "SUPERVISOR_REPLICAS": "2",
        "SUPERVISOR_NODE_RANK": "0",
        "SUPERVISOR_RANK": "0",
        "SUPERVISOR_WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "3",
        "OMP_PLACES": "{0},{2},{6}",
        "OMP_PROC_BIND": "close",
        "MKL_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "3",
        "BLIS_NUM_THREADS": "3",
        "NUMEXPR_NUM_THREADS": "3",
    }
    assert first["cpus"] == [0, 2, 6] and first["nodes"] == [0]
    assert second["nodes"] == [1]
    assert web["cpus"] == [] and web["nodes"] == [] and "PATH" not in web["env"]


def test_text_shows_each_replica() -> None:
    config = bound_config()
    text = render_text(plan_for(config), config)
    assert "engine_0: CPUs 0,2,6, nodes 0" in text
    assert "web_0: unbound" in text
    assert "argv: numactl --physcpubind=0,2,6 --membind=0 -- python w.py --rank 0" in text
    assert "argv: sh -c 'echo '\"'\"'hi there'\"'\"''" in text
    assert "env:  OMP_PLACES='{0},{2},{6}'" in text
    assert "PLACEVISOR_X" not in text


def test_run_check_valid(tmp_path: Path) -> None:
    shutil.copy(UBICLOUD, tmp_path / "dump.json")
    path = tmp_path / "ok.toml"
    path.write_text(
        '[topology]\nstrategy = "nodes"\nlscpu = "dump.json"\nnuma = "off"\n\n'
        '[[group]]\nname = "engine"\ncommand = ["sh", "-c", "true"]\nreplicas = 2\n'
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_check(str(path), as_json=True, out=out, err=err) == 0
    assert err.getvalue() == ""
    replicas = json.loads(out.getvalue())["replicas"]
    assert [r["cpus"] for r in replicas] == [[0, 2, 6], [4, 8, 10]]
    out = io.StringIO()
    assert run_check(str(path), as_json=False, out=out, err=err) == 0
    assert "engine_1: CPUs 4,8,10, nodes 1" in out.getvalue()


def test_probe_caches_and_explains(tmp_path: Path) -> None:
    fake = tmp_path / "numactl"
    log = tmp_path / "calls"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'case "$1" in --membind=0) exit 0;; esac\n'
        'echo "set_mempolicy: Operation not permitted" >&2\necho "usage: numactl" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    probe = NumactlProbe(str(fake), environ={"OMP_NUM_THREADS": "4", "PATH": "/bin:/usr/bin"})
    assert probe(["--membind=0"]) is None
    reason = probe(["--membind=1"])
    assert reason is not None and reason.endswith("failed: set_mempolicy: Operation not permitted")
    assert probe(["--membind=1"]) == reason
    assert log.read_text().splitlines() == ["--membind=0 true", "--membind=1 true"]


def test_probe_missing_program(tmp_path: Path) -> None:
    reason = NumactlProbe(str(tmp_path / "nope"))(["--membind=0"])
    assert reason is not None and "could not run" in reason


@pytest.mark.skipif(shutil.which("numactl") is None, reason="numactl not installed")
def test_real_numactl_out_of_range_node() -> None:
    reason = NumactlProbe("numactl")(["--membind=4095"])
    assert reason is not None and "\n" not in reason


POOL = """
[control]
listen = "127.0.0.1:9100"

[[socket]]
name = "http"
listen = "unix:run/http.sock"
reuse_port = true

[[group]]
name = "engine"
command = ["sh", "-c", "true"]
ready = "notify"
watchdog = 5
omp_bind = "spread"

[[group]]
name = "api"
command = ["sh", "-c", "exec server --fd {fd:http} --rank {rank}"]
replicas = 2
sockets = ["http"]
ready = "http:http://127.0.0.1:8000/ready"
health = "tcp:127.0.0.1:8000"
after = ["engine"]
"""


def test_json_shows_every_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pool.toml"
    path.write_text(POOL)
    for var in ("SLURM_PROCID", "GROUP_RANK", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    out, err = io.StringIO(), io.StringIO()
    assert run_check(str(path), as_json=True, out=out, err=err, node_rank=1, nodes=2) == 0
    data = json.loads(out.getvalue())
    assert list(data) == ["replicas", "groups", "sockets", "control", "launcher"]
    engine, api = data["groups"]
    assert engine == {
        "name": "engine",
        "replicas": 1,
        "ready": "notify",
        "ready_timeout": 60.0,
        "health": "",
        "health_interval": 10.0,
        "health_failures": 3,
        "watchdog": 5.0,
        "after": [],
        "sockets": [],
        "omp_bind": "spread",
    }
    assert api["after"] == ["engine"] and api["sockets"] == ["http"]
    assert api["ready"] == "http:http://127.0.0.1:8000/ready"
    assert api["health"] == "tcp:127.0.0.1:8000"
    assert data["sockets"] == [
        {
            "name": "http",
            "listen": f"unix:{tmp_path / 'run' / 'http.sock'}",
            "backlog": 1024,
            "reuse_port": True,
        }
    ]
    socket = data["control"]["socket"]
    assert socket.startswith("/run/user/7/placevisor/pool-") and socket.endswith("-n1.sock")
    assert data["control"]["listen"] == "127.0.0.1:9100"
    assert data["launcher"] == {"node_rank": 1, "nodes": 2, "source": "--node-rank/--nodes"}


def test_text_shows_every_new_key(tmp_path: Path) -> None:
    path = tmp_path / "pool.toml"
    path.write_text(POOL.replace('listen = "127.0.0.1:9100"', 'socket = ""'))
    out, err = io.StringIO(), io.StringIO()
    assert run_check(str(path), as_json=False, out=out, err=err, node_rank=0, nodes=1) == 0
    lines = out.getvalue().splitlines()
    assert "launcher: node rank 0 of 1 nodes (--node-rank/--nodes)" in lines
    assert "control: socket none" in lines
    assert f"socket http: unix:{tmp_path / 'run' / 'http.sock'} (backlog 1024, reuse_port)" in lines
    assert "group engine: ready 'notify' within 60 s; watchdog 5 s; omp_bind spread" in lines
    assert (
        "group api: ready 'http:http://127.0.0.1:8000/ready' within 60 s; "
        "health 'tcp:127.0.0.1:8000' every 10 s, 3 misses fail; after engine; "
        "sockets http (fd 3); omp_bind close"
    ) in lines


def test_launcher_from_slurm_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "pool.toml"
    path.write_text(POOL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PYTHONPATH"))}
    env |= {"PYTHONPATH": str(ROOT), "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", str(path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    launcher = json.loads(done.stdout)["launcher"]
    assert launcher == {"node_rank": 1, "nodes": 2, "source": "SLURM_PROCID/SLURM_NTASKS"}
    bad = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", str(path)],
        env=env | {"SLURM_PROCID": "2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == (
        "SLURM_PROCID/SLURM_NTASKS: node rank 2 must be below the number of nodes 2\n"
    )


def test_removed_env_is_shown_when_the_plan_carries_it() -> None:
    config = bound_config()
    plan = plan_for(config)
    first = plan.replicas[0]
    carrying = SimpleNamespace(
        replicas=(
            SimpleNamespace(
                **{s: getattr(first, s) for s in first.__slots__ if s != "removed_env"},
                removed_env=("KMP_AFFINITY",),
            ),
        ),
        warnings=(),
    )
    data = json.loads(render_json(carrying))  # type: ignore[arg-type]
    assert data["replicas"][0]["removed_env"] == ["KMP_AFFINITY"]
    text = render_text(carrying, config)  # type: ignore[arg-type]
    assert "  removed from env: KMP_AFFINITY" in text.splitlines()
