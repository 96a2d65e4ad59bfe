"""Benchmark the shared-socket API pool: throughput, latency while rolling, rolling step time.

All in one run, against a baseline measured in the same run:

- ``rps``: requests/s of 4 uvicorn servers behind our ``[[socket]]`` (``serve``)
  vs the same app under ``uvicorn --workers 4`` (uvicorn's own shared socket);
  wrk with keep-alive, both pools up, runs alternated, medians (goal: ratio >= 0.95);
- ``p99``: p99 latency while rolling restarts of the 4 servers run back to back
  vs steady state, every request on a new connection (goal: ratio <= 3, with 0
  connect errors, 0 timeouts, 0 non-2xx; read errors are uvicorn's own
  closing of connections it accepted but had not read yet, and are reported);
- ``step``: time from a replica sending READY=1 to the next replica receiving its
  stop signal during ``ctl restart --rolling`` (goal: < 10 ms); both ends are
  stamped by the replicas with CLOCK_MONOTONIC, which all processes share.

Needs wrk (apt) and uvicorn. Run: python scripts/bench_pool.py [--seconds S] [--repeat N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}

#: Stamps READY=1 and SIGTERM with CLOCK_MONOTONIC, for the ``step`` figure.
STAMPER = """
import os, signal, socket, sys, time
def term(*_):
    print("TERM", os.environ["SUPERVISOR_NAME"], time.monotonic(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("READY", os.environ["SUPERVISOR_NAME"], time.monotonic(), flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
while True:
    time.sleep(60)
"""

_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
LUA_CLOSE = 'wrk.headers["Connection"] = "close"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_pool: timed out waiting for {what}")
        time.sleep(0.05)


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def ctl(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "supervisor", "ctl", "--socket", str(sock), *args],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip


def write_config(tmp: Path, port: int, command: list[str], ready: str, replicas: int = 4) -> Path:
    sock = tmp / "ctl.sock"
    text = (
        '[supervisor]\nshutdown_timeout = 10.0\nlog_format = "json"\ncolor = "never"\n\n'
        f'[control]\nsocket = "{sock}"\n\n'
        f'[[socket]]\nname = "http"\nlisten = "127.0.0.1:{port}"\nbacklog = 4096\n\n'
        f'[[group]]\nname = "api"\nreplicas = {replicas}\nbind = false\nsockets = ["http"]\n'
        f"command = {json.dumps(command)}\nready = {json.dumps(ready)}\nready_timeout = 60.0\n"
    )
    path = tmp / "pool.toml"
    path.write_text(text)
    return path


@contextmanager
def ours(tmp: Path, port: int) -> Iterator[Path]:
    """``serve`` with 4 uvicorn servers on one shared socket; yields the ctl socket."""
    command = [
        PY, "-m", "uvicorn", "api_app:app", "--app-dir", str(EXAMPLES),
        "--fd", "{fd:http}", "--no-access-log",
    ]  # fmt: skip
    cfg = write_config(tmp, port, command, "line:Uvicorn running on")
    with _serve(cfg) as sock:
        yield sock


@contextmanager
def _serve(cfg: Path) -> Iterator[Path]:
    sock = cfg.parent / "ctl.sock"
    log = (cfg.parent / "serve.out").open("wb")
    proc = subprocess.Popen(
        [PY, "-m", "supervisor", "serve", str(cfg)],
        stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO,
    )  # fmt: skip
    try:
        wait_until(lambda: sock.exists() and ctl(sock, "ready").returncode == 0, 60, "serve")
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        sock.unlink(missing_ok=True)


@contextmanager
def theirs(port: int) -> Iterator[None]:
    """The same app under ``uvicorn --workers 4``."""
    proc = subprocess.Popen(
        [
            PY, "-m", "uvicorn", "api_app:app", "--app-dir", str(EXAMPLES), "--host",
            "127.0.0.1", "--port", str(port), "--workers", "4", "--no-access-log",
            "--log-level", "warning",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )  # fmt: skip
    try:
        pids: set[str] = set()

        def four() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    pids.add(resp.headers["x-pid"])
            except OSError:
                return False
            return len(pids) == 4

        wait_until(four, 60, "uvicorn --workers 4")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def wrk(
    port: int, seconds: float, tmp: Path, *, close: bool, background: bool = False
) -> subprocess.Popen[str]:
    argv = [
        "wrk", "-t2", "-c64", f"-d{seconds:g}s", "--timeout", "2s", "--latency",
        f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    if close:
        script = tmp / "close.lua"
        script.write_text(LUA_CLOSE)
        argv[1:1] = ["-s", str(script)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse(text: str) -> dict[str, float]:
    """wrk's summary: requests/s, p99 (ms), error counts (lines absent when 0)."""
    out: dict[str, float] = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["rps"] = float(m.group(1))
    if m := re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        out["p99_ms"] = float(m.group(1)) * scale
    if m := _SOCKET_ERRORS.search(text):
        kinds = ("connect", "read", "write", "timeout")
        out.update(zip(kinds, map(float, m.groups()), strict=True))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["non2xx"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", text):
        out["requests"] = float(m.group(1))
    return out


def run_wrk(port: int, seconds: float, tmp: Path, *, close: bool) -> dict[str, float]:
    out, _ = wrk(port, seconds, tmp, close=close).communicate()
    return parse(out)


def bench_rps(tmp: Path, seconds: float, repeat: int) -> tuple[float, float]:
    """Both pools up the whole time (each idle while the other is measured); order alternated."""
    a, b = free_port(), free_port()
    runs: dict[int, list[float]] = {a: [], b: []}
    with ours(tmp, a), theirs(b):
        for i in range(repeat):
            for port in (a, b) if i % 2 == 0 else (b, a):
                runs[port].append(run_wrk(port, seconds, tmp, close=False)["rps"])
    return statistics.median(runs[a]), statistics.median(runs[b])


def bench_p99(tmp: Path, seconds: float) -> tuple[dict[str, float], dict[str, float], int]:
    port = free_port()
    with ours(tmp, port) as sock:
        steady = run_wrk(port, seconds, tmp, close=True)
        load = wrk(port, seconds, tmp, close=True)
        wait_until(lambda: answers(port), 10, "load")
        rolls = 0
        while load.poll() is None:
            r = ctl(sock, "restart", "--rolling", "api")
            if r.returncode != 0:
                raise SystemExit(f"bench_pool: rolling restart failed: {r.stderr.strip()}")
            rolls += 1
        rolling = parse(load.communicate()[0])
    return steady, rolling, rolls


def bench_step(tmp: Path, rounds: int) -> list[float]:
    cfg = write_config(tmp, free_port(), [PY, "-c", STAMPER], "notify")
    with _serve(cfg) as sock:
        for _ in range(rounds):
            r = ctl(sock, "restart", "--rolling", "api")
            if r.returncode != 0:
                raise SystemExit(f"bench_pool: rolling restart failed: {r.stderr.strip()}")
    stamps = []
    for line in (tmp / "serve.out").read_text().splitlines():
        m = re.search(r"\) (READY|TERM) (api_\d+) ([\d.]+)$", line)
        if m:
            stamps.append((float(m.group(3)), m.group(1), int(m.group(2)[4:])))
    stamps.sort()
    gaps = []
    # A successor's READY (index k) followed by the next replica's TERM (index k+1).
    for (t0, what0, k0), (t1, what1, k1) in itertools.pairwise(stamps):
        if what0 == "READY" and what1 == "TERM" and k1 == k0 + 1:
            gaps.append((t1 - t0) * 1000)
    return gaps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="wrk run length (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="alternated rps runs (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="rolling restarts for the step")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_pool: needs wrk (apt install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as d:
        tmp = Path(d)
        ours_rps, theirs_rps = bench_rps(tmp, args.seconds, args.repeat)
        steady, rolling, rolls = bench_p99(tmp, max(args.seconds, 10.0))
        gaps = bench_step(tmp, args.rounds)
    errors = {k: int(rolling[k]) for k in ("connect", "timeout", "non2xx", "read", "write")}
    rows = [
        ("req/s, 4 uvicorn behind our socket", f"{ours_rps:,.0f}", ""),
        ("req/s, uvicorn --workers 4", f"{theirs_rps:,.0f}", ""),
        ("  ratio ours/theirs (goal >= 0.95)", f"{ours_rps / theirs_rps:.3f}", ""),
        ("p99 steady, new conn per request", f"{steady['p99_ms']:.1f} ms", ""),
        (f"p99 during {rolls} rolling restarts", f"{rolling['p99_ms']:.1f} ms", ""),
        ("  ratio rolling/steady (goal <= 3)", f"{rolling['p99_ms'] / steady['p99_ms']:.2f}", ""),
        ("  errors while rolling", json.dumps(errors), f"of {int(rolling['requests'])} req"),
        (
            "READY=1 -> next stop signal (goal < 10 ms)",
            f"median {statistics.median(gaps):.2f} ms",
            f"max {max(gaps):.2f} ms, n={len(gaps)}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{os.cpu_count()} CPUs; wrk -t2 -c64; {args.seconds:g} s x {args.repeat} for req/s")
    for label, value, note in rows:
        print(f"| {label:<{width}} | {value:>22} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
