"""``scripts/bench_verify.py`` runs end to end on a few real replicas.

The timing is not asserted (machines vary); the bench itself refuses to print its
figures when a pinned replica is reported as drift, so the goal line means the
verification it timed was also right.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_verify.py"


def test_bench_verify_prints_its_figures(no_leaks_sync: None) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--replicas", "4", "--passes", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "drift" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("replicas 4, threads 20,"), done.stdout + done.stderr
    for start in ("verify pass median:", "same pass, trees found by", "psutil walk median:"):
        assert any(line.startswith(start) for line in lines), done.stdout
    assert lines[-1].startswith("goal: one pass over 4 replicas under 20 ms: "), done.stdout
