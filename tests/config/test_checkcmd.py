"""``check`` output: the text for people, the JSON schema for machines, the probe."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from supervisor.check import render_json, render_text, run_check
from supervisor.config import Config, GroupConfig, TopologySettings
from supervisor.numaprobe import NumactlProbe
from supervisor.plan import build_plan
from topology import Topology

DATA = Path(__file__).resolve().parent / "data"
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
    assert list(first) == ["name", "group", "index", "argv", "env", "cpus", "nodes"]
    assert first["name"] == "engine_0" and first["group"] == "engine" and first["index"] == 0
    assert first["argv"] == [
        "numactl", "--physcpubind=0,2,6", "--membind=0", "--", "python", "w.py", "--rank", "0",
    ]  # fmt: skip
    assert first["env"] == {
        "SUPERVISOR_GROUP": "engine",
        "SUPERVISOR_NAME": "engine_0",
        "SUPERVISOR_INDEX": "0",
        "SUPERVISOR_REPLICAS": "2",
        "OMP_NUM_THREADS": "3",
        "OMP_PLACES": "{0},{2},{6}",
        "OMP_PROC_BIND": "close",
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
