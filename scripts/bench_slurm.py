"""Benchmark ``serve`` under a real local Slurm cluster against the bare replicas, in one run.

Two ways to run the same two replicas, one per Slurm task (``srun -n2 -c1
--cpu-bind=cores``):

- ``supervised``: each task runs ``python -m supervisor serve`` with one bound
  replica;
- ``direct``: each task is the replica itself (no supervisor).

Figures, medians of ``--repeat`` runs of each, taken in turns:
- ``ready``: from the start of ``srun`` to the bench having read every
  replica's first line (its report, printed once it runs);
- ``cancel``: from ``scancel JOB`` to the exit of ``srun`` (the step over;
  for ``supervised`` that includes the supervisors' graceful stop).

The ratio column is supervised / direct. The cluster is the test suite's own
fixture (tests/launchers/_slurm.py): munged, slurmctld and slurmd started for
this run in a temporary directory, stopped at the end. Root only.

Run: python scripts/bench_slurm.py [--repeat N] [--mode cgroup|linuxproc]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.launchers._slurm import LocalSlurm, cgroup_usable, ensure_installed  # noqa: E402

REPLICA = REPO / "tests" / "launchers" / "_replica.py"
PY = sys.executable


def one_run(slurm: LocalSlurm, argv: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds to every replica's report, seconds from scancel to srun's exit)."""
    env = {**slurm.env(), "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["srun", "-n2", "-c1", "--cpu-bind=cores", f"--chdir={cwd}", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    assert proc.stdout is not None
    reports: list[dict[str, str]] = []
    while len(reports) < 2:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"srun ended (status {proc.wait()}) before both replicas ran")
        if m := re.search(r"REPLICA (\{.*\})", line):
            reports.append(json.loads(m.group(1)))
    ready = time.perf_counter() - t0
    job = reports[0]["job_id"]
    t1 = time.perf_counter()
    slurm.run(["scancel", job])
    proc.stdout.read()
    proc.wait(60)
    return ready, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mode", choices=["cgroup", "linuxproc"], default="")
    args = ap.parse_args(argv)
    ensure_installed()
    mode = args.mode or ("linuxproc" if cgroup_usable() else "cgroup")
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        cfg = tmp / "bench.toml"
        cfg.write_text(
            '[supervisor]\nshutdown_timeout = 5.0\ncolor = "never"\n\n'
            '[topology]\nstrategy = "cores"\n\n'
            f'[[group]]\nname = "engine"\ncommand = {json.dumps([PY, str(REPLICA), "bench"])}\n'
            'replicas = 1\nrestart = "never"\n'
        )
        contenders = {
            "supervised": [PY, "-m", "supervisor", "serve", str(cfg)],
            "direct": [PY, str(REPLICA), "bench"],
        }
        slurm = LocalSlurm(tmp / "cluster")
        slurm.root.mkdir(mode=0o755)
        t_all = time.perf_counter()
        try:
            slurm.start_munge()
            slurm.start(mode)
            results: dict[str, list[tuple[float, float]]] = {n: [] for n in contenders}
            for run_argv in contenders.values():  # warm-up: first job after a start
                one_run(slurm, run_argv, tmp)
            for _ in range(args.repeat):
                for name, run_argv in contenders.items():
                    results[name].append(one_run(slurm, run_argv, tmp))
        finally:
            slurm.stop()
    med = {n: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for n, rs in results.items()}
    print(f"Slurm {mode} mode, 2 tasks x 1 replica, medians of {args.repeat}; "
          f"{time.perf_counter() - t_all:.1f} s in all")
    print("| figure | supervised | direct | ratio |")
    print("|---|---|---|---|")
    for i, label in enumerate(("srun -> every replica ready (s)", "scancel -> srun exit (s)")):
        s, d = med["supervised"][i], med["direct"][i]
        print(f"| {label} | {s:.3f} | {d:.3f} | {s / d:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
