"""``GET /metrics``: a prometheus_client collector over a status snapshot.

``snapshot`` runs in the event loop (cheap, no I/O); ``render_metrics``
reads /proc for each replica's process tree and renders OpenMetrics, and
runs in a worker thread. prometheus_client is imported only here, so only
a scrape pays for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .procstats import TreeStats, tree_stats

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..engine import Supervisor
    from ..replica import ReplicaStatus

LABELS = ("replica", "group")


@dataclass(frozen=True)
class Snapshot:
    replicas: list[ReplicaStatus]
    escalations: int


def snapshot(sup: Supervisor) -> Snapshot:
    return Snapshot(list(sup.status()), int(sup.escalations))


class ReplicaCollector:
    """One series per replica for each metric of the contract."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def describe(self) -> list[Metric]:
        return []  # collect() is not run at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=LABELS)

        def counter(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        up = gauge("placevisor_replica_up", "1 while the replica's process is running.")
        ready = gauge("placevisor_replica_ready", "1 while the replica is ready.")
        restarts = counter("placevisor_replica_restarts_total", "Restarts of the replica.")
        cpu = counter(
            "placevisor_replica_cpu_seconds_total",
            "CPU time (user+system) of the replica's live process tree.",
        )
        rss = gauge("placevisor_replica_memory_rss_bytes", "Resident memory of the process tree.")
        threads = gauge("placevisor_replica_threads", "Threads in the replica's process tree.")
        numa = gauge(
            "placevisor_replica_numa_local_ratio",
            "Share of the tree's mapped pages on its place's NUMA nodes (bound replicas).",
        )
        placement = gauge(
            "placevisor_replica_placement_ok",
            "1 when every thread runs inside its place, 0 on drift (bound, checked replicas).",
        )
        lines = counter(
            "placevisor_output_lines_total",
            "Output lines forwarded from the replica.",
            ("replica", "group", "stream"),
        )
        for st in self.snap.replicas:
            labels = [st.name, st.group]
            running = st.pid is not None and st.state in ("starting", "running", "stopping")
            up.add_metric(labels, 1.0 if running else 0.0)
            ready.add_metric(labels, 1.0 if st.ready else 0.0)
            restarts.add_metric(labels, float(st.restarts))
            lines.add_metric([*labels, "stdout"], float(st.lines_stdout))
            lines.add_metric([*labels, "stderr"], float(st.lines_stderr))
            stats: TreeStats | None = None
            if running and st.pid is not None:
                stats = tree_stats(st.pid, numa=bool(st.nodes))
            cpu.add_metric(labels, stats.cpu_seconds if stats else 0.0)
            rss.add_metric(labels, float(stats.rss_bytes) if stats else 0.0)
            threads.add_metric(labels, float(stats.threads) if stats else 0.0)
            ratio = stats.numa_local_ratio(st.nodes) if stats else None
            if ratio is not None:
                numa.add_metric(labels, ratio)
            if st.placement in ("ok", "drift"):
                placement.add_metric(labels, 1.0 if st.placement == "ok" else 0.0)
        esc = CounterMetricFamily(
            "placevisor_escalations_total", "Failures that escalated and stopped every group."
        )
        esc.add_metric([], float(self.snap.escalations))
        yield from (up, ready, restarts, cpu, rss, threads, numa, placement, lines, esc)


OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def wants_classic_text(accept: str) -> bool:
    """True when the client asks for Prometheus text and not for OpenMetrics (promtool)."""
    return "text/plain" in accept and "application/openmetrics-text" not in accept


def render_metrics(snap: Snapshot, classic: bool = False) -> tuple[bytes, str]:
    """OpenMetrics (or classic Prometheus text) for ``snap``; blocking: reads /proc."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaCollector(snap))
    body: bytes
    if classic:
        from prometheus_client.exposition import generate_latest

        body = generate_latest(registry)
        return body, TEXT_TYPE
    from prometheus_client.openmetrics.exposition import ALLOWUTF8
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    # Every name here is a legacy-valid Prometheus name, so the output is the
    # same as the default escaping's; this mode skips its per-character check
    # of every name (three quarters of the time for 1,000 replicas).
    body = om_latest(registry, escaping=ALLOWUTF8)  # type: ignore[no-untyped-call]
    return body, OPENMETRICS_TYPE
