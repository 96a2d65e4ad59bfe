"""Benchmark the control socket against supervisord's, measured in the same run.

    .venv/bin/python scripts/bench_control.py [--replicas 1000] [--programs 200] [--runs 5]

1. ``ctl status`` for N replicas, the whole command from a shell (median of
   runs) vs ``supervisorctl status`` with 200 programs (supervisor installed
   into a scratch venv under /tmp for this comparison only).
2. ``GET /metrics`` for N replicas, timed at the server (render only).
3. CPU added to an idle supervisor with 64 replicas by one scrape a second,
   and its context switches between scrapes.
Prints ratios; asserts nothing (speed goals are read, not tested).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SCRATCH_VENV = Path("/tmp/placevisor-bench-supervisord")

SERVER = textwrap.dedent(
    """
    import sys, anyio, time
    sys.path.insert(0, {repo!r})
    from supervisor import Config, GroupConfig, SupervisorSettings
    from supervisor import Supervisor
    from supervisor.control.server import serve_control
    from supervisor.control.metrics import render_metrics, snapshot

    async def main():
        cfg = Config(groups=(GroupConfig(name="w", command=("sleep", "3600"), replicas={n}),),
                     supervisor=SupervisorSettings(color="never", log_format="json"))
        sup = Supervisor(cfg)
        async with serve_control(sup, socket={sock!r}), sup:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                await anyio.to_thread.run_sync(render_metrics, snapshot(sup))
                times.append(time.perf_counter() - t)
            times.sort()
            print("METRICS", times[len(times) // 2], flush=True)
            await anyio.sleep(3600)

    anyio.run(main)
    """
)


def median_shell(cmd: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(["sh", "-c", cmd + " > /dev/null"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.1)


def start_server(n: int, sock: str) -> tuple[subprocess.Popen[str], float]:
    proc = subprocess.Popen(
        [PY, "-c", SERVER.format(repo=str(REPO), n=n, sock=sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("METRICS"):
            return proc, float(line.split()[1])
    raise SystemExit(f"bench: the server for {n} replicas did not start")


def ctl_cmd(sock: str, *args: str) -> str:
    return f"PYTHONPATH={REPO} {PY} -m supervisor ctl --socket {sock} " + " ".join(args)


def supervisorctl_baseline(programs: int, runs: int, tmp: Path) -> float:
    if not (SCRATCH_VENV / "bin" / "supervisord").exists():
        subprocess.run([PY, "-m", "venv", str(SCRATCH_VENV)], check=True)
        subprocess.run(
            [str(SCRATCH_VENV / "bin" / "pip"), "install", "-q", "supervisor"], check=True
        )
    conf = tmp / "supervisord.conf"
    sock = tmp / "supervisor.sock"
    parts = [
        f"[unix_http_server]\nfile={sock}\n",
        f"[supervisord]\nlogfile={tmp}/supervisord.log\npidfile={tmp}/sd.pid\nnodaemon=true\n",
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        f"[supervisorctl]\nserverurl=unix://{sock}\n",
    ]
    parts += [
        f"[program:p{i}]\ncommand=sleep 3600\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
        for i in range(programs)
    ]
    conf.write_text("\n".join(parts))
    sd = subprocess.Popen(
        [str(SCRATCH_VENV / "bin" / "supervisord"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctl = f"{SCRATCH_VENV / 'bin' / 'supervisorctl'} -c {conf} status"
    try:

        def all_running() -> bool:
            out = subprocess.run(["sh", "-c", ctl], capture_output=True, text=True).stdout
            return out.count("RUNNING") == programs

        wait_for(all_running, 120, "supervisord's programs")
        return median_shell(ctl, runs)
    finally:
        sd.terminate()
        sd.wait(30)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ctx_switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def scrape_cost(sock: str, pid: int, seconds: int) -> tuple[float, float, int]:
    """CPU % of one core idle, CPU % with one scrape a second, switches in an idle second."""
    time.sleep(2)
    c0, t0 = proc_cpu(pid), time.monotonic()
    time.sleep(seconds)
    idle = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
    c0, t0 = proc_cpu(pid), time.monotonic()
    for _ in range(seconds):
        tick = time.monotonic()
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--unix-socket", sock, "http://l/metrics"],
            check=True,
        )
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    busy = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
    time.sleep(0.2)
    s0 = ctx_switches(pid)
    time.sleep(1.0)
    return 100 * idle, 100 * busy, ctx_switches(pid) - s0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scrape-seconds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pvbench-", dir="/tmp") as d:
        tmp = Path(d)
        sock = str(tmp / "big.sock")
        big, metrics_s = start_server(args.replicas, sock)
        try:
            ours = median_shell(ctl_cmd(sock, "status"), args.runs)
        finally:
            big.terminate()
            big.wait(60)
        theirs = supervisorctl_baseline(args.programs, args.runs, tmp)
        print(f"ctl status, {args.replicas} replicas:        {ours * 1000:7.1f} ms (median)")
        print(f"supervisorctl status, {args.programs} programs: {theirs * 1000:7.1f} ms (median)")
        print(f"ratio ctl/supervisorctl: {ours / theirs:.2f} (goal <= 0.5)")
        print(f"/metrics render, {args.replicas} replicas: {metrics_s * 1000:.1f} ms (goal < 100)")
        sock64 = str(tmp / "small.sock")
        small, _ = start_server(64, sock64)
        try:
            idle, busy, switches = scrape_cost(sock64, small.pid, args.scrape_seconds)
        finally:
            small.terminate()
            small.wait(60)
        print(
            f"64 replicas: idle {idle:.2f}% CPU, with 1 scrape/s {busy:.2f}% "
            f"(added {busy - idle:.2f}%, goal < 2); context switches in an idle second: "
            f"{switches}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
