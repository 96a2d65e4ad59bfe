"""supervisor.verify against real processes: pinned, widened, threads moved, trees, exits.

Each child is a small Python program driven over stdin, answering each command
with one line, so every check runs after the state it asserts on is in place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from supervisor.verify import (
    Mismatch,
    Target,
    ThreadPlacement,
    Verifier,
    mismatches,
    parent_map,
    read_tree,
)

ALLOWED = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2 allowed CPUs to tell them apart")
FIRST, LAST = ALLOWED[0], ALLOWED[-1]

DRIVER = r"""
import os, subprocess, sys, threading
kids, stop = [], threading.Event()
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "pin":
        os.sched_setaffinity(0, {int(c) for c in arg.split(",")})
        print("ok", flush=True)
    elif cmd == "thread":
        got = []
        def run():
            os.sched_setaffinity(0, {int(c) for c in arg.split(",")})
            got.append(threading.get_native_id())
            with open(f"/proc/self/task/{got[0]}/comm", "w") as comm:
                comm.write("mover")  # the kernel's thread name, as top -H shows it
            ready.set()
            stop.wait()
        ready = threading.Event()
        threading.Thread(target=run, name="mover", daemon=True).start()
        ready.wait()
        print(got[0], flush=True)
    elif cmd == "spawn":
        kids.append(subprocess.Popen([sys.executable, "-c", arg], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE))
        print(kids[-1].stdout.readline().decode().strip(), flush=True)
    elif cmd == "quit":
        break
stop.set()
for k in kids:
    k.stdin.close()
    k.wait()
"""
# A grandchild with one extra thread: prints its pid, lives until stdin closes.
GRANDCHILD = (
    "import os, sys, threading; e = threading.Event(); "
    "threading.Thread(target=e.wait, daemon=True).start(); "
    "print(os.getpid(), flush=True); sys.stdin.read(); e.set()"
)


class Driven:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer, f"driver died answering {line!r}"
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def child(no_leaks_sync: None) -> Iterator[Driven]:
    driven = Driven()
    try:
        yield driven
    finally:
        driven.close()


def test_pinned_child_is_ok(child: Driven) -> None:
    child.ask(f"pin {FIRST}")
    verdict, new = Verifier().check("w_0", child.pid, (FIRST,), (0,))
    assert (verdict, new) == ("ok", [])
    threads = read_tree(child.pid)
    assert [t.tid for t in threads] == [child.pid]
    assert threads[0].cpus == {FIRST}
    assert threads[0].name == "python" or threads[0].name.startswith("python")


@needs_two
def test_widened_child_drifts_once_with_its_tid(child: Driven) -> None:
    child.ask(f"pin {FIRST}")
    verifier = Verifier()
    assert verifier.check("w_0", child.pid, (FIRST,), ())[0] == "ok"
    child.ask(f"pin {FIRST},{LAST}")
    verdict, new = verifier.check("w_0", child.pid, (FIRST,), ())
    assert verdict == "drift"
    assert [(m.replica, m.pid, m.tid, m.cpus, m.place_cpus) for m in new] == [
        ("w_0", child.pid, child.pid, (FIRST, LAST), (FIRST,))
    ]
    assert new[0].fields()["cpus"] == f"{FIRST},{LAST}" or new[0].fields()["cpus"] == (
        f"{FIRST}-{LAST}"
    )
    # Still drifting, already reported: the verdict stays, nothing new to log.
    assert verifier.check("w_0", child.pid, (FIRST,), ()) == ("drift", [])
    # Back inside the place: ok again.
    child.ask(f"pin {FIRST}")
    assert verifier.check("w_0", child.pid, (FIRST,), ()) == ("ok", [])


@needs_two
def test_a_thread_moved_out_is_the_one_reported(child: Driven) -> None:
    child.ask(f"pin {FIRST}")
    tid = int(child.ask(f"thread {LAST}"))
    assert tid != child.pid
    verdict, new = Verifier().check("w_0", child.pid, (FIRST,), ())
    assert verdict == "drift"
    assert [(m.tid, m.thread, m.cpus) for m in new] == [(tid, "mover", (LAST,))]


@needs_two
def test_descendants_threads_are_read_by_both_tree_walks(child: Driven) -> None:
    child.ask(f"pin {FIRST}")
    grandchild = int(child.ask(f"spawn {GRANDCHILD}"))
    from_files = read_tree(child.pid)
    scanned = parent_map()
    from_scan = read_tree(child.pid, children=lambda p: scanned.get(p, ()))
    pids = {t.pid for t in from_files}
    assert pids == {child.pid, grandchild}
    assert sum(t.pid == grandchild for t in from_files) == 2  # main thread + one more
    assert [(t.pid, t.tid) for t in from_scan] == [(t.pid, t.tid) for t in from_files]
    # The grandchild inherited the pin; moving it out drifts the whole replica.
    os.sched_setaffinity(grandchild, {FIRST, LAST})
    for verifier in (Verifier(), Verifier(children_files=False)):
        verdict, new = verifier.check("w_0", child.pid, (FIRST,), ())
        assert verdict == "drift"
        assert [(m.pid, m.tid) for m in new] == [(grandchild, grandchild)]


def test_memory_nodes_checked_only_when_asked(child: Driven) -> None:
    mems = read_tree(child.pid)[0].mems
    outside = (max(mems) + 1,)
    cpus = tuple(ALLOWED)
    assert Verifier().check("w_0", child.pid, cpus, outside, check_mems=False)[0] == "ok"
    verdict, new = Verifier().check("w_0", child.pid, cpus, outside, check_mems=True)
    assert verdict == "drift"
    assert new[0].mems == tuple(sorted(mems)) and new[0].place_nodes == outside
    assert Verifier().check("w_0", child.pid, cpus, tuple(mems), check_mems=True)[0] == "ok"


@needs_two
def test_new_pid_and_forget_report_again(child: Driven) -> None:
    verifier = Verifier()
    child.ask(f"pin {FIRST},{LAST}")
    assert len(verifier.check("w_0", child.pid, (FIRST,), ())[1]) == 1
    assert verifier.check("w_0", child.pid, (FIRST,), ())[1] == []
    verifier.forget("w_0")
    assert len(verifier.check("w_0", child.pid, (FIRST,), ())[1]) == 1
    assert verifier.reported == {"w_0": 1}
    # Another replica's identical mismatch is its own report.
    assert len(verifier.check("w_1", child.pid, (FIRST,), ())[1]) == 1


def test_exited_and_zombie_processes_are_tolerated(no_leaks_sync: None) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert read_tree(done.pid) == []
    assert Verifier().check("gone", done.pid, (FIRST,), ()) == ("ok", [])
    zombie = subprocess.Popen(["true"])
    try:
        # Exited, not reaped: its /proc entry stays until wait().
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
        assert all(t.pid == zombie.pid for t in read_tree(zombie.pid))
    finally:
        zombie.wait()


def test_a_tree_churning_children_never_breaks_a_read(no_leaks_sync: None) -> None:
    # A shell forking short-lived children as fast as it can: entries vanish mid-walk.
    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        verifier = Verifier()
        scanning = Verifier(children_files=False)
        for _ in range(300):
            threads = read_tree(churn.pid)
            assert threads and threads[0].pid == churn.pid
            targets = [Target("c_0", churn.pid, tuple(ALLOWED), ())]
            assert verifier.check_all(targets)["c_0"][0] == "ok"
            assert scanning.check_all(targets)["c_0"][0] == "ok"
        # A child pid that is gone by the time it is read is skipped, not an error.
        assert read_tree(churn.pid, children=lambda p: [2**22 + 7] if p == churn.pid else [])
    finally:
        churn.kill()
        churn.wait()


def test_mismatches_is_pure_over_thread_records() -> None:
    threads = [
        ThreadPlacement(10, 10, "main", frozenset({0}), frozenset({0})),
        ThreadPlacement(10, 11, "omp", frozenset({0, 1}), frozenset({0})),
        ThreadPlacement(12, 12, "helper", frozenset({0}), frozenset({0, 1})),
    ]
    assert mismatches("r", threads, (0,), (0,)) == [
        Mismatch("r", 10, 11, "omp", (0, 1), (0,), (0,), (0,))
    ]
    found = mismatches("r", threads, (0,), (0,), check_mems=True)
    assert [m.tid for m in found] == [11, 12]
    # No nodes in the place: memory is not judged even when asked.
    assert [m.tid for m in mismatches("r", threads, (0,), (), check_mems=True)] == [11]
    assert mismatches("r", threads, (0, 1), (0, 1), check_mems=True) == []
