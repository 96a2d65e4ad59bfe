"""``scripts/bench.py --quick`` runs end to end: every scenario, every contender, one table.

The numbers are not asserted (CI machines vary); the bench itself fails (non-zero
exit) when a contender garbles, reorders or loses a forwarded line, exits with the
wrong status, or leaves a worker behind, so a pass here means those checks held.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
FIGURES = (
    "workers all started",
    "forward 8 x",
    "failure -> group of",
    "SIGTERM ->",
    "ignores SIGTERM",
    "wakeups/s",
    "threads",
    "RSS MB",
    "plan 1,024 replicas",
)


def test_bench_quick_prints_its_table(no_leaks_sync: None) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| figure"))
    for who in ("ours/asyncio", "asyncio", "floor"):
        assert who in header
    for figure in FIGURES:
        row = next((line for line in lines if line.startswith(f"| {figure}")), None)
        if row is None:
            row = next((line for line in lines if figure in line), None)
        assert row is not None, f"no row for {figure!r} in:\n{done.stdout}"
    assert any(line.startswith("forward: ours/floor") for line in lines)
    assert any(line.startswith("plan: ") and "ms" in line for line in lines)
