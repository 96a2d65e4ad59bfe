"""/metrics: OpenMetrics from prometheus_client, parsed back, checked by promtool; /proc trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from supervisor.control.procstats import parse_numa_maps, tree_pids, tree_stats
from tests.control.conftest import Served, curl
from tests.helpers import config, group, wait_until

# A replica whose tree is itself + two children, each burning a little CPU and memory.
TREE = (
    "import subprocess, sys, time\n"
    "kids = [subprocess.Popen([sys.executable, '-c', "
    '\'import time\\nb = b"x" * (30 << 20)\\nprint("kid up", flush=True)\\n'
    "while True: time.sleep(3600)']) for _ in range(2)]\n"
    "print('tree up', flush=True)\n"
    "while True: time.sleep(3600)\n"
)

NAMES = {
    "placevisor_replica_up",
    "placevisor_replica_ready",
    "placevisor_replica_restarts",
    "placevisor_replica_cpu_seconds",
    "placevisor_replica_memory_rss_bytes",
    "placevisor_replica_threads",
    "placevisor_output_lines",
    "placevisor_escalations",
}


def scrape(sock_path: str) -> str:
    r = curl(sock_path, "/metrics", "-H", "Accept: application/openmetrics-text")
    body, _, code = r.stdout.rpartition("\n")
    assert code == "200", r.stdout[-500:]
    return body


def test_metrics_parse_cover_the_tree_and_pass_promtool(
    served: Callable[..., Served], sock_path: str
) -> None:
    s = served(config(group("tree", TREE), group("idle", "import time; time.sleep(3600)")))
    wait_until(lambda: s.status()["tree_0"].lines_stdout == 3, what="tree and kids up")
    pid = s.status()["tree_0"].pid
    wait_until(lambda: len(tree_pids(pid)) == 3, what="two children")
    text = scrape(sock_path)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= NAMES
    samples = {
        (smp.name, smp.labels.get("replica"), smp.labels.get("stream")): smp.value
        for f in families.values()
        for smp in f.samples
    }
    assert samples[("placevisor_replica_up", "tree_0", None)] == 1
    assert samples[("placevisor_output_lines_total", "tree_0", "stdout")] == 3
    # RSS covers the children's 2 x 30 MiB, not only the parent's few MiB.
    assert samples[("placevisor_replica_memory_rss_bytes", "tree_0", None)] > 60 << 20
    assert samples[("placevisor_replica_memory_rss_bytes", "idle_0", None)] < 60 << 20
    assert samples[("placevisor_replica_threads", "tree_0", None)] >= 3
    assert samples[("placevisor_escalations_total", None, None)] == 0
    labels = {smp.labels["group"] for smp in families["placevisor_replica_up"].samples}
    assert labels == {"tree", "idle"}
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing: apt-get install prometheus (listed in .ci/apt-packages)")
    # promtool lints the Prometheus text format: the same collector, asked for text/plain.
    classic = curl(sock_path, "/metrics", "-H", "Accept: text/plain").stdout.rpartition("\n")[0]
    assert "# TYPE placevisor_escalations_total counter" in classic
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=classic, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_tree_stats_of_a_real_tree() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(tree_pids(child.pid)) == 3, what="two sleeps")
        stats = tree_stats(child.pid)
        assert stats is not None and stats.processes == 3 and stats.threads == 3
        assert stats.rss_bytes > 0 and stats.cpu_seconds >= 0
        assert sum(stats.numa_pages.values()) > 0  # numa_maps read for every process
        assert stats.numa_local_ratio((0,)) == pytest.approx(
            stats.numa_pages.get(0, 0) / sum(stats.numa_pages.values())
        )
    finally:
        child.kill()
        child.wait()
    assert tree_stats(child.pid) is None
    assert tree_stats(os.getpid()) is not None


def test_numa_maps_fields() -> None:
    text = (
        "7f0000 default file=/lib/x.so mapped=3 N0=2 N1=1 kernelpagesize_kB=4\n"
        "7f1000 bind:1 anon=5 dirty=5 N1=5 kernelpagesize_kB=4\n"
        "7f2000 default\n"
    )
    assert parse_numa_maps(text) == {0: 2, 1: 6}
