"""Benchmark the supervisor against a plain asyncio loop and the floor, in one run.

Every contender is a separate program that the bench starts and measures from the
outside, reading its stdout as fast as it can:

- ``ours/uvloop``, ``ours/asyncio``: ``python -m supervisor serve CONFIG --loop L``;
- ``asyncio``: a plain asyncio supervisor (``--role baseline``): create_subprocess_exec,
  one task per pipe, ``readline`` and a prefix per line, ``wait()`` per child;
- ``floor``: no supervisor logic (``--role floor``): subprocess.Popen, one epoll loop
  over the raw pipes and pidfds, ``os.read`` relayed raw with ``os.write``.

All three have the same duties: forward the workers' output, exit 1 and tear the rest
down when one fails, SIGTERM everything and exit 0 on SIGTERM. Workers are a tiny C
program compiled at start (``cc``), or a Python stand-in without a compiler. The bench
reads every contender's stdout through the same 1 MiB pipe.

Scenarios (sizes: full / ``--quick``):
- start: N=200/20 workers print ``ready``; time from exec of the program to the bench
  having read every ``ready`` line (interpreter start included for all three); also the
  time the first ``ready`` line was read, and (ours) when the last replica was spawned
  (its ``replica_started`` log timestamp): the first line must come before the last spawn;
- forward: 8 workers x 200,000/20,000 lines; lines/s from the first byte read to EOF,
  then (untimed) every line is checked: intact, prefixed with its replica, in order;
- failure: 64/8 workers; one is sent SIGUSR1 and exits 1 (restart "never"); time from
  that kill to the program's exit with status 1 (all workers checked gone);
- stop: SIGTERM to the program with 64/8 workers; time to its exit, workers gone;
- stop_ignore (ours only): one worker ignores SIGTERM; overhead past shutdown_timeout;
- idle: 64/8 workers sleeping; context switches/s of the program over 3/1 s (every
  thread, /proc/PID/task/*/status), its thread count and RSS (psutil);
- plan (in-process, ours only): lscpu dump of a synthetic 4,096-CPU machine parsed
  into a Topology + build_plan of 1,024 replicas with strategy "cores";
- scale (embedded, ours only): ``await sup.scale(g, 200/20)`` from 0, then back to 0
  (a second group keeps the supervisor busy); each call returns once every replica is
  started / gone;
- reload (embedded, ours only): ``await sup.reload(same config)`` with 200/20 replicas
  running; time, and the replicas it restarted (goal 0).

Run: python scripts/bench.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import select
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from supervisor.config import Config

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
READ = 1 << 20
T = TypeVar("T")
SCENARIOS = ("start", "forward", "failure", "stop", "idle", "plan", "scale", "reload")

WORKER_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void fail(int s) { (void)s; _exit(1); }
int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "lines")) {
        long n = atol(argv[2]);
        static char buf[1 << 16];
        setvbuf(stdout, buf, _IOFBF, sizeof buf);
        for (long i = 0; i < n; i++) printf("%s %07ld payload-abcdefghijklmnop\n", argv[3], i);
        return fflush(stdout) ? 1 : 0;
    }
    if (argc > 1 && !strcmp(argv[1], "ignore")) signal(SIGTERM, SIG_IGN);
    signal(SIGUSR1, fail);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) pause();
}
"""

WORKER_PY = """\
import os, signal, sys
if sys.argv[1] == "lines":
    tag = sys.argv[3]
    out = sys.stdout.buffer
    for i in range(int(sys.argv[2])):
        out.write(b"%s %07d payload-abcdefghijklmnop\\n" % (tag.encode(), i))
    out.flush()
    sys.exit(0)
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, lambda *a: os._exit(1))
print("ready", os.getpid(), flush=True)
while True:
    signal.pause()
"""


# --------------------------------------------------------------------------- contenders
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)


def role_floor(cmds: list[list[str]]) -> int:
    """No supervisor logic: Popen, one epoll loop over raw pipes and pidfds."""
    sel = selectors.DefaultSelector()
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGTERM, lambda *a: None)
    sel.register(sig_r, selectors.EVENT_READ, ("sig",))
    procs: list[subprocess.Popen[bytes]] = []
    for cmd in cmds:
        r, w = os.pipe()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=w)
        os.close(w)
        procs.append(proc)
        sel.register(r, selectors.EVENT_READ, ("out",))
        sel.register(os.pidfd_open(proc.pid), selectors.EVENT_READ, ("exit", proc))
    live, pipes, status, stopping = len(procs), len(procs), 0, False
    while live or pipes:
        for key, _ in sel.select():
            if key.data[0] == "out":
                data = os.read(key.fd, READ)
                if data:
                    _write_all(1, data)
                else:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    pipes -= 1
            elif key.data[0] == "exit":
                sel.unregister(key.fd)
                os.close(key.fd)
                live -= 1
                if key.data[1].wait() != 0 and not status and not stopping:
                    status = 1
                    _terminate(procs)
            else:
                os.read(sig_r, 64)
                stopping = True
                _terminate(procs)
    return status


def role_baseline(cmds: list[list[str]]) -> int:
    """The plain asyncio loop: a task per pipe, readline and a prefix per line."""
    import asyncio

    async def main() -> int:
        loop = asyncio.get_running_loop()
        out = sys.stdout.buffer
        procs = []
        for i, cmd in enumerate(cmds):
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            procs.append((proc, b"(w_%d pid=%d) " % (i, proc.pid)))

        async def pump(stream: asyncio.StreamReader, prefix: bytes) -> None:
            while line := await stream.readline():
                out.write(prefix + line)
                if not stream._buffer:  # type: ignore[attr-defined]
                    out.flush()

        requested = []

        def stop() -> None:
            for p, _ in procs:
                if p.returncode is None:
                    p.terminate()

        def on_sigterm() -> None:
            requested.append(True)
            stop()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        pumps = [
            asyncio.ensure_future(pump(s, prefix))
            for p, prefix in procs
            for s in (p.stdout, p.stderr)
            if s is not None
        ]
        status = 0
        waits = {asyncio.ensure_future(p.wait()) for p, _ in procs}
        while waits:
            done, waits = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if any(t.result() != 0 for t in done) and not status and not requested:
                status = 1
                stop()
        await asyncio.gather(*pumps)
        out.flush()
        return status

    return asyncio.run(main())


# --------------------------------------------------------------------------- workers
def build_worker(tmp: Path) -> list[str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is not None:
        src = tmp / "worker.c"
        src.write_text(WORKER_C)
        exe = tmp / "worker"
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
        return [str(exe)]
    script = tmp / "worker.py"
    script.write_text(WORKER_PY)
    return [PYTHON, "-S", str(script)]


@dataclass
class Contender:
    name: str
    worker: list[str]
    tmp: Path
    loop: str | None = None  # ours only

    @property
    def ours(self) -> bool:
        return self.loop is not None

    def argv(self, kind: str, n: int, *, lines: int = 0, timeout: float = 5.0) -> list[str]:
        """The program to run for N workers of ``kind`` (ready | lines | ignore)."""
        if self.loop is None:
            cmds = [self._cmd(kind, lines, f"w_{i}") for i in range(n)]
            flat = [arg for cmd in cmds for arg in ("--cmd", *cmd, "--end")]
            role = "floor" if self.name == "floor" else "baseline"
            return [PYTHON, str(Path(__file__).resolve()), "--role", role, *flat]
        config = self.tmp / f"{kind}-{n}-{self.loop}.toml"
        cmd = self._cmd(kind, lines, "{name}")
        quoted = ", ".join(_toml_str(a) for a in cmd)
        config.write_text(
            f'[supervisor]\nshutdown_timeout = {timeout}\ncolor = "never"\n'
            f'log_format = "json"\n\n[[group]]\nname = "w"\ncommand = [{quoted}]\n'
            f'replicas = {n}\nrestart = "never"\n'
        )
        return [PYTHON, "-m", "supervisor", "serve", str(config), "--loop", self.loop]

    def _cmd(self, kind: str, lines: int, tag: str) -> list[str]:
        if kind == "lines":
            return [*self.worker, "lines", str(lines), tag]
        return [*self.worker, kind]


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- running
class Run:
    """One contender program, its stdout read by us, its stderr kept in a file."""

    def __init__(self, argv: list[str], tmp: Path) -> None:
        self.err = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115 (closed by finish)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err, cwd=ROOT
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.pidfd = os.pidfd_open(self.proc.pid)
        # A big pipe to read from, alike for every contender (as a pager or logger would).
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.chunks: list[bytes] = []
        self.ready = 0
        self.first_byte: float | None = None
        self.first_ready: float | None = None  # seconds since exec
        self.t0_wall = time.time()
        self.err_text = ""

    def read_until_ready(self, n: int, deadline: float = 60.0) -> float:
        """Read until ``n`` ready lines arrived; return the seconds since exec."""
        end = time.perf_counter() + deadline
        carry = b""
        while self.ready < n:
            data = os.read(self.fd, READ)
            if not data:
                raise RuntimeError(f"EOF after {self.ready}/{n} ready lines\n{self.stderr()}")
            self.chunks.append(data)
            block = carry + data
            self.ready += block.count(b"ready ")
            if self.ready and self.first_ready is None:
                self.first_ready = time.perf_counter() - self.t0
            carry = block[-5:]
            if time.perf_counter() > end:
                raise RuntimeError(f"only {self.ready}/{n} ready lines\n{self.stderr()}")
        return time.perf_counter() - self.t0

    def read_to_eof(self) -> float:
        """Read everything; return the seconds from the first byte to EOF."""
        while data := os.read(self.fd, READ):
            if self.first_byte is None:
                self.first_byte = time.perf_counter()
            self.chunks.append(data)
        assert self.first_byte is not None, self.stderr()
        return time.perf_counter() - self.first_byte

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Block until the program exits, woken by its pidfd (Popen.wait(timeout) polls
        with sleeps up to 50 ms, which would quantise the timings)."""
        if not select.select([self.pidfd], [], [], timeout)[0]:
            raise RuntimeError(f"still running after {timeout} s\n{self.stderr()}")
        return self.proc.wait()

    def pids(self) -> list[int]:
        return [int(p) for p in re.findall(rb"ready (\d+)", b"".join(self.chunks))]

    def event_times(self, name: str) -> list[float]:
        """Seconds since exec of each JSON log event ``name`` (its ISO timestamp)."""
        import json
        from datetime import datetime

        self.err.seek(0)
        found = []
        for line in self.err.read().splitlines():
            if line.startswith(b"{") and b'"%s"' % name.encode() in line:
                ev = json.loads(line)
                if ev.get("event") == name and "timestamp" in ev:
                    found.append(datetime.fromisoformat(ev["timestamp"]).timestamp() - self.t0_wall)
        return found

    def stderr(self) -> str:
        if self.err.closed:
            return self.err_text
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-3000:]

    def finish(self, timeout: float = 30.0) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        rest = self.proc.communicate(timeout=timeout)[0]
        if rest:
            self.chunks.append(rest)
        self.err_text = self.stderr()
        self.err.close()
        os.close(self.pidfd)
        return self.proc.returncode


def all_gone(pids: Sequence[int]) -> bool:
    import psutil

    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
    return True


@dataclass
class Start:
    all_ready: float
    first_line: float
    last_spawn: float | None  # ours only


def scenario_start(c: Contender, n: int) -> Start:
    run = Run(c.argv("ready", n), c.tmp)
    try:
        took = run.read_until_ready(n)
        spawns = run.event_times("replica_started") if c.ours else []
    finally:
        run.finish()
    if c.ours and len(spawns) != n:
        raise RuntimeError(f"{c.name}: {len(spawns)} replica_started events, expected {n}")
    assert run.first_ready is not None
    return Start(took, run.first_ready, max(spawns) if spawns else None)


LINE_RE = re.compile(rb"\((w_\d+) pid=\d+\) (w_\d+) (\d{7}) payload-abcdefghijklmnop")


def check_lines(data: bytes, replicas: int, lines: int) -> str | None:
    """None when every line is intact, prefixed with its replica and in order."""
    seen: dict[bytes, int] = {}
    for line in data.split(b"\n")[:-1]:
        m = LINE_RE.fullmatch(line)
        if m is None:
            return f"garbled line: {line[:120]!r}"
        if m[1] != m[2]:
            return f"prefix {m[1]!r} on a line of {m[2]!r}"
        seq = int(m[3])
        if seen.get(m[1], 0) != seq:
            return f"{m[1]!r}: line {seq} where {seen.get(m[1], 0)} was due"
        seen[m[1]] = seq + 1
    counts = sorted(seen.values())
    if len(seen) != replicas or counts != [lines] * replicas:
        return f"expected {replicas} x {lines} lines, got {counts}"
    return None


def scenario_forward(c: Contender, replicas: int, lines: int) -> float:
    run = Run(c.argv("lines", replicas, lines=lines), c.tmp)
    elapsed = run.read_to_eof()
    rc = run.finish()
    if rc != 0:
        raise RuntimeError(f"{c.name}: forward exited {rc}\n{run.stderr()}")
    if c.name != "floor":  # the floor relays raw chunks: lines of replicas mix
        problem = check_lines(b"".join(run.chunks), replicas, lines)
        if problem:
            raise RuntimeError(f"{c.name}: output check failed: {problem}")
    else:
        got = b"".join(run.chunks).count(b"\n")
        if got != replicas * lines:
            raise RuntimeError(f"floor: {got} lines, expected {replicas * lines}")
    return replicas * lines / elapsed


def scenario_failure(c: Contender, n: int) -> float:
    run = Run(c.argv("ready", n), c.tmp)
    try:
        run.read_until_ready(n)
        pids = run.pids()
        t0 = time.perf_counter()
        os.kill(pids[n // 2], signal.SIGUSR1)
        rc = run.wait_exit()
        elapsed = time.perf_counter() - t0
    finally:
        run.finish()
    if rc != 1:
        raise RuntimeError(f"{c.name}: failure exited {rc}, expected 1\n{run.stderr()}")
    if not all_gone(pids):
        raise RuntimeError(f"{c.name}: workers outlived the teardown")
    return elapsed


def scenario_stop(c: Contender, n: int, kind: str = "ready", timeout: float = 5.0) -> float:
    run = Run(c.argv(kind, n, timeout=timeout), c.tmp)
    try:
        run.read_until_ready(n)
        pids = run.pids()
        t0 = time.perf_counter()
        run.proc.send_signal(signal.SIGTERM)
        rc = run.wait_exit()
        elapsed = time.perf_counter() - t0
    finally:
        run.finish()
    if rc != 0:
        raise RuntimeError(f"{c.name}: stop exited {rc}, expected 0\n{run.stderr()}")
    if not all_gone(pids):
        raise RuntimeError(f"{c.name}: workers outlived the stop")
    return elapsed


def _switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


@dataclass
class Idle:
    wakeups: float
    threads: int
    rss_mb: float


def scenario_idle(c: Contender, n: int, seconds: float) -> Idle:
    import psutil

    run = Run(c.argv("ready", n), c.tmp)
    try:
        run.read_until_ready(n)
        pid = run.proc.pid
        time.sleep(0.3)  # let start-up work (log lines, first reaps) settle
        before = _switches(pid)
        time.sleep(seconds)
        wakeups = (_switches(pid) - before) / seconds
        proc = psutil.Process(pid)
        return Idle(wakeups, proc.num_threads(), proc.memory_info().rss / 2**20)
    finally:
        run.finish()


def scenario_plan(replicas: int, cpus: int) -> float:
    """In-process: parse a synthetic lscpu dump, then plan every replica."""
    import json

    from supervisor.config import Config, GroupConfig, TopologySettings
    from supervisor.plan import build_plan
    from topology import Topology
    from topology.testing import lscpu_json, synthetic

    dump = json.dumps(
        lscpu_json(
            synthetic(sockets=2, cores_per_socket=cpus // 4, threads_per_core=2, nodes_per_socket=2)
        )
    )
    config = Config(
        groups=(GroupConfig(name="w", command=("worker", "{index}"), replicas=replicas),),
        topology=TopologySettings(strategy="cores", numa="off"),
    )
    environ = dict(os.environ)
    t0 = time.perf_counter()
    topo = Topology.from_lscpu_json(dump)
    plan = build_plan(config, topology=topo, environ=environ, which=lambda name: f"/usr/bin/{name}")
    elapsed = time.perf_counter() - t0
    assert len(plan.replicas) == replicas and all(r.cpus for r in plan.replicas)
    return elapsed


class _Count:
    """A logger for the embedded scenarios: counts events, prints nothing."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def _note(self, event: str, **_: object) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1

    debug = info = warning = error = _note


def _embedded(loop: str, fn: Callable[[], Awaitable[T]]) -> T:
    import anyio

    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return anyio.run(fn, backend="asyncio", backend_options=options)


def _bench_config(worker: list[str], n: int) -> Config:
    from supervisor.config import Config, GroupConfig, SupervisorSettings

    return Config(
        groups=(
            GroupConfig(name="anchor", command=(*worker, "ready"), bind=False),
            GroupConfig(name="w", command=(*worker, "ready"), replicas=n, bind=False),
        ),
        supervisor=SupervisorSettings(shutdown_timeout=5.0, color="never"),
        base_dir=ROOT,
    )


@dataclass
class Scale:
    up: float
    down: float


def scenario_scale(loop: str, worker: list[str], n: int) -> Scale:
    """Embedded: a group scaled 0 -> n -> 0; each call returns once started / gone."""

    async def main() -> Scale:
        from supervisor import Supervisor

        log = _Count()
        with open(os.devnull, "wb") as null:
            async with Supervisor(_bench_config(worker, 1), stdout=null, logger=log) as sup:
                await sup.scale("w", 0)
                t0 = time.perf_counter()
                await sup.scale("w", n)
                up = time.perf_counter() - t0
                running = [s for s in sup.status() if s.group == "w" and s.state == "running"]
                if len(running) != n:
                    raise RuntimeError(f"scale up: {len(running)}/{n} running")
                pids = [s.pid for s in running if s.pid is not None]
                t0 = time.perf_counter()
                await sup.scale("w", 0)
                down = time.perf_counter() - t0
                if [s for s in sup.status() if s.group == "w"] or not all_gone(pids):
                    raise RuntimeError("scale down: replicas left")
        return Scale(up, down)

    return _embedded(loop, main)


@dataclass
class Reload:
    took: float
    restarted: int


def scenario_reload(loop: str, worker: list[str], n: int) -> Reload:
    """Embedded: reload an equal config with n replicas running; nothing may restart."""

    async def main() -> Reload:
        from supervisor import Supervisor

        log = _Count()
        config = _bench_config(worker, n)
        with open(os.devnull, "wb") as null:
            async with Supervisor(config, stdout=null, logger=log) as sup:
                before = {s.name: s.pid for s in sup.status()}
                started = log.counts.get("replica_started", 0)
                t0 = time.perf_counter()
                await sup.reload(_bench_config(worker, n))  # equal, not the same object
                took = time.perf_counter() - t0
                after = {s.name: s.pid for s in sup.status()}
                restarted = sum(1 for k, v in before.items() if after.get(k) != v)
                restarted += log.counts.get("replica_started", 0) - started
        return Reload(took, restarted)

    return _embedded(loop, main)


# --------------------------------------------------------------------------- the table
@dataclass
class Row:
    figure: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, who: str, value: float) -> None:
        self.values.setdefault(who, []).append(value)

    def median(self, who: str) -> float | None:
        got = self.values.get(who)
        return statistics.median(got) if got else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "lines/s":
        return f"{value / 1e6:.3f} M" if value >= 1e6 else f"{value / 1e3:.1f} k"
    if unit == "s":
        return f"{value:.4f}"
    return f"{value:.1f}"


def ratio(a: float | None, b: float | None, label: str) -> str:
    if a is None or b is None or b == 0:
        return f"{label}: -"
    return f"{label}: {a / b:.2f}x"


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--role"]:
        return run_role(args_in[1], args_in[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (< 60 s)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure (median)")
    ap.add_argument("--only", default="", help="comma list of scenarios: " + ",".join(SCENARIOS))
    ap.add_argument(
        "--who", default="", help="comma list of contenders: ours/uvloop,ours/asyncio,asyncio,floor"
    )
    args = ap.parse_args(args_in)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    n_start = 20 if quick else 200
    fwd_r, fwd_l = (8, 20_000) if quick else (8, 200_000)
    n_group = 8 if quick else 64
    idle_s = 1.0 if quick else 3.0
    ignore_timeout = 0.2 if quick else 0.5
    only = set(filter(None, args.only.split(","))) or set(SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="placevisor-bench-") as tmp_name:
        tmp = Path(tmp_name)
        worker = build_worker(tmp)
        import importlib.util

        loops = ["uvloop", "asyncio"] if importlib.util.find_spec("uvloop") else ["asyncio"]
        contenders = [Contender(f"ours/{lp}", worker, tmp, lp) for lp in loops]
        contenders += [Contender("asyncio", worker, tmp), Contender("floor", worker, tmp)]
        if args.who:
            contenders = [c for c in contenders if c.name in args.who.split(",")]
        rows = {
            "start": Row(f"{n_start} workers all started", "s"),
            "first_line": Row(f"start {n_start}: first line read", "s"),
            "last_spawn": Row(f"start {n_start}: last replica spawned", "s"),
            "forward": Row(f"forward {fwd_r} x {fwd_l:,} lines", "lines/s"),
            "failure": Row(f"failure -> group of {n_group} down", "s"),
            "stop": Row(f"SIGTERM -> {n_group} stopped", "s"),
            "stop_ignore": Row(f"ignores SIGTERM: past {ignore_timeout:g} s timeout", "s"),
            "idle_wakeups": Row(f"idle {n_group}: wakeups/s", "/s"),
            "idle_threads": Row(f"idle {n_group}: threads", "n"),
            "idle_rss": Row(f"idle {n_group}: RSS MB", "MB"),
            "plan": Row("plan 1,024 replicas / 4,096 CPUs", "s"),
            "scale_up": Row(f"scale 0 -> {n_start} (embedded)", "s"),
            "scale_down": Row(f"scale {n_start} -> 0 (embedded)", "s"),
            "reload": Row(f"reload unchanged, {n_start} running (embedded)", "s"),
            "reload_restarts": Row("reload unchanged: replicas restarted", "n"),
        }
        t_begin = time.perf_counter()
        for i in range(repeat):
            for c in contenders:  # interleaved, so drift hits every contender alike
                if "start" in only:
                    got = scenario_start(c, n_start)
                    rows["start"].add(c.name, got.all_ready)
                    rows["first_line"].add(c.name, got.first_line)
                    if got.last_spawn is not None:
                        rows["last_spawn"].add(c.name, got.last_spawn)
                if "forward" in only:
                    rows["forward"].add(c.name, scenario_forward(c, fwd_r, fwd_l))
                if "failure" in only:
                    rows["failure"].add(c.name, scenario_failure(c, n_group))
                if "stop" in only:
                    rows["stop"].add(c.name, scenario_stop(c, n_group))
                    if c.ours:
                        took = scenario_stop(c, 1, "ignore", timeout=ignore_timeout)
                        rows["stop_ignore"].add(c.name, took - ignore_timeout)
                if "idle" in only and i == 0:
                    idle = scenario_idle(c, n_group, idle_s)
                    rows["idle_wakeups"].add(c.name, idle.wakeups)
                    rows["idle_threads"].add(c.name, idle.threads)
                    rows["idle_rss"].add(c.name, idle.rss_mb)
                if c.ours and "scale" in only:
                    assert c.loop is not None
                    scaled = scenario_scale(c.loop, worker, n_start)
                    rows["scale_up"].add(c.name, scaled.up)
                    rows["scale_down"].add(c.name, scaled.down)
                if c.ours and "reload" in only:
                    assert c.loop is not None
                    reloaded = scenario_reload(c.loop, worker, n_start)
                    rows["reload"].add(c.name, reloaded.took)
                    rows["reload_restarts"].add(c.name, reloaded.restarted)
            if "plan" in only:
                rows["plan"].add("ours/" + loops[0], scenario_plan(1024, 4096))
        total = time.perf_counter() - t_begin
    names = [c.name for c in contenders]
    print_table(rows, names, repeat, total)
    print_goals(rows, loops)
    return 0


def print_table(rows: dict[str, Row], names: list[str], repeat: int, total: float) -> None:
    width = max(len(r.figure) + len(r.unit) + 3 for r in rows.values())
    print(f"medians of {repeat}; {os.cpu_count()} CPUs; {total:.1f} s")
    print(f"| {'figure':<{width}} | " + " | ".join(f"{n:>12}" for n in names) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * 14 for _ in names) + "|")
    for row in rows.values():
        if not row.values:
            continue
        label = f"{row.figure} ({row.unit})"
        cells = " | ".join(f"{fmt(row.median(n), row.unit):>12}" for n in names)
        print(f"| {label:<{width}} | {cells} |")


def print_goals(rows: dict[str, Row], loops: list[str]) -> None:
    ours = f"ours/{loops[0]}"
    m = {k: (lambda who, r=r: r.median(who)) for k, r in rows.items()}
    lines = [
        ratio(m["start"](ours), m["start"]("floor"), "start: ours/floor (goal <= 1.5)"),
        ratio(m["start"]("asyncio"), m["start"](ours), "start: asyncio/ours (goal >= 2)"),
        ratio(m["forward"](ours), m["forward"]("floor"), "forward: ours/floor (goal >= 0.8)"),
        ratio(m["forward"](ours), m["forward"]("asyncio"), "forward: ours/asyncio (goal >= 4)"),
        ratio(m["failure"](ours), m["failure"]("floor"), "failure: ours/floor (goal <= 2)"),
        ratio(m["stop"](ours), m["stop"]("floor"), "stop: ours/floor (goal <= 1.2)"),
    ]
    first, last = m["first_line"](ours), m["last_spawn"](ours)
    if first is not None and last is not None:
        verdict = "yes" if first < last else "no"
        lines.append(
            f"start: first line read before the last spawn (goal yes): {verdict} "
            f"({first:.3f} s vs {last:.3f} s after exec; floor's first line "
            f"{m['first_line']('floor') or 0:.3f} s)"
        )
    up, down = m["scale_up"](ours), m["scale_down"](ours)
    if up is not None and down is not None:
        lines.append(
            ratio(up, m["start"](ours), "scale: 0 -> N / start N (same N)")
            + f"; up {up:.3f} s, down {down:.3f} s"
        )
    reload_s, restarted = m["reload"](ours), m["reload_restarts"](ours)
    if reload_s is not None:
        lines.append(
            f"reload unchanged: {reload_s * 1e3:.1f} ms, {restarted:.0f} restarted (goal 0)"
        )
    ignore = m["stop_ignore"](ours)
    if ignore is not None:
        lines.append(f"stop_ignore: {ignore * 1e3:.1f} ms past the timeout (goal <= 50 ms)")
    plan = m["plan"](ours)
    if plan is not None:
        lines.append(f"plan: {plan * 1e3:.1f} ms (goal < 50 ms)")
    if len(loops) == 2:
        for key in ("start", "forward", "failure", "stop"):
            a, b = m[key]("ours/asyncio"), m[key]("ours/uvloop")
            lines.append(ratio(a, b, f"{key}: ours asyncio/uvloop (goal within 10%)"))
    for line in lines:
        print(line)


def run_role(role: str, rest: list[str]) -> int:
    cmds: list[list[str]] = []
    it = iter(rest)
    for arg in it:
        assert arg == "--cmd", rest
        cmd = []
        for part in it:
            if part == "--end":
                break
            cmd.append(part)
        cmds.append(cmd)
    roles: dict[str, Callable[[list[list[str]]], int]] = {
        "floor": role_floor,
        "baseline": role_baseline,
    }
    return roles[role](cmds)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
