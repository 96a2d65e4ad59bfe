"""Benchmark placement verification: one pass over 64 replicas' process trees.

Each "replica" is a real Python process with 3 extra threads and one ``sleep`` child
(5 threads per tree, 320 in all), pinned to CPU 0. A pass is ``Verifier.check_all``
over all 64, reading every thread's ``/proc/PID/task/TID/status`` (plus one ``/proc``
scan where the kernel lacks the children files). The baseline, measured in the same
run, is the obvious psutil walk: ``children(recursive=True)``, ``threads()`` and
``os.sched_getaffinity`` per thread. Median of several passes.

Run: python scripts/bench_verify.py [--replicas N] [--passes N]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.verify import Target, Verifier, children_file_supported

GOAL_S = 0.020
CHILD = (
    "import subprocess, sys, threading\n"
    "stop = threading.Event()\n"
    "for _ in range(3): threading.Thread(target=stop.wait, daemon=True).start()\n"
    "kid = subprocess.Popen(['sleep', '600'])\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
    "kid.kill(); kid.wait()\n"
)


def median_of(fn: Callable[[], object], passes: int) -> float:
    times = []
    for _ in range(passes):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def psutil_pass(pids: list[int]) -> None:
    """The baseline: what one would write with psutil, same information gathered."""
    for pid in pids:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            for thread in proc.threads():
                os.sched_getaffinity(thread.id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--passes", type=int, default=31)
    args = parser.parse_args()
    place = (min(os.sched_getaffinity(0)),)
    procs = [
        subprocess.Popen(
            ["taskset", "-c", str(place[0]), sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(args.replicas)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline() != b"ready\n":
                raise SystemExit(f"replica {p.pid} did not start")
        pids = [p.pid for p in procs]
        verifier = Verifier()
        targets = [Target(f"r_{i}", pid, place, ()) for i, pid in enumerate(pids)]
        results = verifier.check_all(targets)
        drifted = [name for name, (verdict, _) in results.items() if verdict != "ok"]
        if drifted:
            raise SystemExit(f"pinned replicas reported as drift: {drifted[:4]}")
        threads = sum(len(psutil.Process(pid).threads()) for pid in pids) + len(pids)
        ours = median_of(lambda: verifier.check_all(targets), args.passes)
        scanning = Verifier(children_files=False)
        scan = median_of(lambda: scanning.check_all(targets), args.passes)
        base = median_of(lambda: psutil_pass(pids), args.passes)
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(10)
    mode = "children files" if children_file_supported() else "one /proc scan (no children files)"
    print(f"replicas {args.replicas}, threads {threads}, tree discovery: {mode}")
    print(f"verify pass median: {ours * 1e3:.2f} ms ({ours / threads * 1e6:.1f} us/thread)")
    print(f"same pass, trees found by one /proc scan: {scan * 1e3:.2f} ms")
    print(f"psutil walk median: {base * 1e3:.2f} ms (ratio ours/psutil {ours / base:.2f})")
    met = ours < GOAL_S
    print(
        f"goal: one pass over {args.replicas} replicas under {GOAL_S * 1e3:.0f} ms: "
        f"{'met' if met else 'MISSED'} ({ours * 1e3:.2f} ms)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
