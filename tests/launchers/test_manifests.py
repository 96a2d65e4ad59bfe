"""The Kubernetes manifests and the systemd unit: valid, and consistent with their configs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from supervisor.config import load_config
from tests.helpers import REPO

K8S = sorted((REPO / "examples" / "k8s").glob("*.yaml"))
UNIT = REPO / "examples" / "systemd" / "placevisor.service"
UNIT_CONFIG = REPO / "examples" / "systemd" / "placevisor.toml"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def test_examples_exist() -> None:
    names = {p.name for p in K8S}
    assert {"deployment.yaml", "indexed-job.yaml"} <= names


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_manifest_is_a_bound_pool(path: Path, tmp_path: Path) -> None:
    """Guaranteed QoS with integer CPUs, probes on the control listener, grace > shutdown."""
    docs = documents(path)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    assert workloads
    toml_text = cm["data"]["placevisor.toml"]
    cfg = tomllib.loads(toml_text)
    port = int(cfg["control"]["listen"].rsplit(":", 1)[1])
    timeout = float(cfg["supervisor"]["shutdown_timeout"])
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["terminationGracePeriodSeconds"] > timeout
        (box,) = spec["containers"]
        res = box["resources"]
        assert res["requests"] == res["limits"], "Guaranteed QoS: requests == limits"
        assert str(res["limits"]["cpu"]).isdigit(), "the static CPU manager needs integer CPUs"
        assert box["command"][:4] == ["python3", "-m", "supervisor", "serve"], "exec form"
        ports = {p["name"]: p["containerPort"] for p in box["ports"]}
        for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = box[probe]["httpGet"]
            assert get["path"] == path_
            assert ports[get["port"]] == port, f"{probe} must hit [control] listen"
        mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
        cm_name = cm["metadata"]["name"]
        (vol,) = [v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm_name]
        assert box["command"][4] == f"{mounts[vol['name']]}/placevisor.toml"
        if doc["kind"] == "Job":
            assert doc["spec"]["completionMode"] == "Indexed"
            nodes = box["command"][box["command"].index("--nodes") + 1]
            assert int(nodes) == doc["spec"]["completions"] == doc["spec"]["parallelism"]
    # The embedded config is one the project itself accepts.
    copy = tmp_path / "placevisor.toml"
    copy.write_text(toml_text)
    load_config(copy)


def test_unit_matches_its_config() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert svc["KillMode"] == "mixed"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    timeout = tomllib.loads(UNIT_CONFIG.read_text())["supervisor"]["shutdown_timeout"]
    assert float(svc["TimeoutStopSec"]) > timeout
    assert "supervisor serve" in svc["ExecStart"]
    load_config(UNIT_CONFIG)


def test_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointed at this machine's Python."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / "placevisor.service"
    unit.write_text(UNIT.read_text().replace("/opt/placevisor/venv/bin/python", sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 and "placevisor.service" not in done.stderr:
        pytest.skip(f"systemd-analyze cannot run in this container: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    # A bad value in a known key is only a warning with exit 0: none is allowed either.
    assert "placevisor.service" not in done.stderr, done.stderr
