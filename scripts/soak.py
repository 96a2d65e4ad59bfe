"""Soak: run a real ``serve`` for N minutes while killing random replicas with random signals.

Each replica writes numbered lines as fast as a small budget allows and, after
each line is in the pipe, records its sequence number in a memory-mapped file
(which survives SIGKILL). Every such line must reach the supervisor's stdout,
in order: a missing one is a lost line. Replicas also leave zombies and a
same-group grandchild behind, so the subreaper and group kill are exercised.
Every few seconds the supervisor's fd count, RSS, CPU time and zombie
children are sampled. At the end the supervisor gets SIGTERM and must exit 0
with no process carrying the run's token left.

Run: python scripts/soak.py --minutes 10 --replicas 4
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGINT)

# The replica: numbered lines in bursts; after each os.write succeeds the
# number goes into an mmap'd file, so "written to the pipe" is known even
# after SIGKILL. It also starts a child it never waits for (a zombie-to-be
# that the subreaper must reap once the replica dies) and a sleeper in its
# own process group (killed with the group).
REPLICA = r"""
import mmap, os, struct, subprocess, sys, time, uuid
token, seqdir = sys.argv[1], sys.argv[2]
run = uuid.uuid4().hex[:12]  # pids are reused over a long soak; this is not
fd = os.open(os.path.join(seqdir, f"{run}.seq"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, 8)
mm = mmap.mmap(fd, 8)
struct.pack_into("q", mm, 0, -1)
subprocess.Popen([sys.executable, "-c", "pass", token])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", token])
n = 0
while True:
    for _ in range(20):
        os.write(1, b"SOAK run=%s seq=%d\n" % (run.encode(), n))
        struct.pack_into("q", mm, 0, n)
        n += 1
    time.sleep(0.01)
"""

LINE_RE = re.compile(rb"^\(soak_\d+ pid=\d+\) SOAK run=(\w+) seq=(\d+)$")


@dataclass
class Stream:
    """Per-replica-run bookkeeping of the forwarded numbered lines."""

    next_seq: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    gaps: int = 0
    disorder: int = 0
    malformed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: bytes) -> None:
        m = LINE_RE.match(line)
        if not m:
            self.malformed += 1  # a line cut or merged on its way: corruption
            return
        run, seq = m.group(1).decode(), int(m.group(2))
        with self.lock:
            self.lines += 1
            want = self.next_seq.get(run, 0)
            if seq > want:
                self.gaps += seq - want
            elif seq < want:
                self.disorder += 1
            self.next_seq[run] = max(want, seq + 1)


@dataclass
class Sample:
    t: float
    restarts: int
    kills: int
    fds: int
    rss_mb: float
    cpu_pct: float
    zombies: int
    live: int


def write_config(tmp: Path, token: str, replicas: int) -> Path:
    script = tmp / "replica.py"
    script.write_text(REPLICA)
    seqdir = tmp / "seq"
    seqdir.mkdir()
    cfg = tmp / "soak.toml"
    command = json.dumps([sys.executable, str(script), token, str(seqdir)])
    cfg.write_text(
        f"""
[supervisor]
shutdown_timeout = 5.0
log_format = "json"
color = "never"

[[group]]
name = "soak"
command = {command}
replicas = {replicas}
restart = "always"
max_restarts = 1000
restart_window = 1.0
backoff = 0.02
"""
    )
    return cfg


def replica_pids(sup: psutil.Process, token: str) -> list[int]:
    pids = []
    for child in sup.children():
        try:
            cmd = child.cmdline()
            if token in cmd and child.status() != psutil.STATUS_ZOMBIE and "-c" not in cmd:
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def zombies_of(sup: psutil.Process) -> int:
    count = 0
    for child in sup.children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                count += 1
        except psutil.Error:
            continue
    return count


def with_token(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and token in (p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=0.5, help="seconds between kills")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop", "trio"])
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    token = f"soak-{uuid.uuid4().hex}"
    tmp = Path(tempfile.mkdtemp(prefix="placevisor-soak-"))
    cfg = write_config(tmp, token, args.replicas)

    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "serve", str(cfg), "--loop", args.loop],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sup = psutil.Process(proc.pid)
    stream = Stream()
    events: dict[str, int] = {}
    ev_lock = threading.Lock()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            stream.feed(line.rstrip(b"\n"))

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not line.startswith(b"{"):
                continue  # a replica's own stderr (a SIGINT traceback), prefixed
            try:
                event = json.loads(line)["event"]
            except (ValueError, KeyError):
                continue
            with ev_lock:
                events[event] = events.get(event, 0) + 1

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
    for t in readers:
        t.start()

    start = time.monotonic()
    end = start + args.minutes * 60
    samples: list[Sample] = []
    kills: dict[str, int] = {}
    next_sample = start
    first = sup.cpu_times()
    last_cpu = (start, first.user + first.system)
    while time.monotonic() < end and proc.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            try:
                cpu = sup.cpu_times()
                used = cpu.user + cpu.system
                pct = 100 * (used - last_cpu[1]) / max(now - last_cpu[0], 1e-9)
                last_cpu = (now, used)
                with ev_lock:
                    restarts = events.get("replica_restarting", 0)
                samples.append(
                    Sample(
                        t=now - start,
                        restarts=restarts,
                        kills=sum(kills.values()),
                        fds=sup.num_fds(),
                        rss_mb=sup.memory_info().rss / 2**20,
                        cpu_pct=pct,
                        zombies=zombies_of(sup),
                        live=len(replica_pids(sup, token)),
                    )
                )
            except psutil.Error:
                break
            next_sample += args.sample_every
        pids = replica_pids(sup, token)
        if pids:
            sig = rng.choice(SIGNALS)
            try:
                os.kill(rng.choice(pids), sig)
                kills[sig.name] = kills.get(sig.name, 0) + 1
            except ProcessLookupError:
                pass
        time.sleep(args.kill_every * rng.uniform(0.5, 1.5))

    crashed = proc.poll()
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    for t in readers:
        t.join(timeout=10)
    leftovers = with_token(token)
    for p in leftovers:
        p.kill()

    # Every line recorded as written must have arrived.
    written = 0
    tail_lost = 0
    for seqfile in (tmp / "seq").iterdir():
        run = seqfile.stem
        with open(seqfile, "rb") as f:
            last = struct.unpack("q", mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)[:8])[0]
        written += last + 1
        got = stream.next_seq.get(run, 0)
        tail_lost += max(0, last + 1 - got)
    lost = stream.gaps + tail_lost
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"soak: {args.minutes:g} min, {args.replicas} replicas, loop={args.loop}, token={token}")
    print(f"{'t(s)':>6} {'restarts':>8} {'kills':>6} {'fds':>4} {'rss(MB)':>8} "
          f"{'cpu%':>6} {'zombies':>7} {'live':>4}")
    for s in samples:
        print(f"{s.t:6.0f} {s.restarts:8d} {s.kills:6d} {s.fds:4d} {s.rss_mb:8.1f} "
              f"{s.cpu_pct:6.1f} {s.zombies:7d} {s.live:4d}")
    steady = samples[len(samples) // 4 :] or samples
    with ev_lock:
        ev = dict(events)
    print()
    print(f"kills sent:            {sum(kills.values())} {dict(sorted(kills.items()))}")
    print(f"restarts:              {ev.get('replica_restarting', 0)}")
    print(f"replica exits:         {ev.get('replica_exited', 0)}")
    print(f"escalations:           {ev.get('group_escalated', 0)}")
    print(f"lines written (known): {written}")
    print(f"lines forwarded:       {stream.lines}")
    print(f"lost lines:            {lost} (gaps {stream.gaps}, tail {tail_lost})")
    print(f"out-of-order lines:    {stream.disorder}")
    print(f"malformed lines:       {stream.malformed}")
    print(f"orphans after exit:    {len(leftovers)}")
    print(f"zombies (max sampled): {max((s.zombies for s in samples), default=0)}")
    if samples:
        print(f"fds:                   steady min {min(s.fds for s in steady)}"
              f" max {max(s.fds for s in steady)} (last {samples[-1].fds})")
        print(f"rss (MB):              first {samples[0].rss_mb:.1f} last {samples[-1].rss_mb:.1f}"
              f" steady min {min(s.rss_mb for s in steady):.1f}"
              f" max {max(s.rss_mb for s in steady):.1f}")
        avg = sum(s.cpu_pct for s in samples[1:]) / max(len(samples) - 1, 1)
        print(f"supervisor cpu% (avg): {avg:.1f}")
    print(f"supervisor crashed:    {'no' if crashed is None else f'yes, exit {crashed}'}")
    print(f"exit status on SIGTERM: {status}")
    ok = (
        crashed is None
        and status == 0
        and lost == 0
        and stream.disorder == 0
        and stream.malformed == 0
        and not leftovers
        and ev.get("group_escalated", 0) == 0
    )
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
