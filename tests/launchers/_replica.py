"""A replica for the launcher tests: reports what it was given, then waits or fails.

``python _replica.py TOKEN [EXIT_AFTER_S EXIT_CODE]``. It prints one line
``REPLICA {json}`` (its name, ranks, CPUs, and which launcher variables it
inherited), then either sleeps until a signal with the default dispositions
(it dies of SIGTERM at once, like most programs), or exits with EXIT_CODE
after EXIT_AFTER_S seconds. TOKEN only marks its argv so a test can find
leftover processes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TASK_VARS = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST",
             "SLURM_CPU_BIND_TYPE", "SLURM_CPUS_PER_TASK", "RANK", "LOCAL_RANK")


def main() -> int:
    env = os.environ
    report = {
        "name": env.get("SUPERVISOR_NAME"),
        "rank": env.get("SUPERVISOR_RANK"),
        "node_rank": env.get("SUPERVISOR_NODE_RANK"),
        "world_size": env.get("SUPERVISOR_WORLD_SIZE"),
        "cpus": sorted(os.sched_getaffinity(0)),
        "task_vars": sorted(k for k in env if k in TASK_VARS or k.startswith("SLURM_CPU_BIND")),
        "job_id": env.get("SLURM_JOB_ID"),
        "notify_socket": env.get("NOTIFY_SOCKET"),
    }
    print("REPLICA " + json.dumps(report), flush=True)
    if len(sys.argv) > 3:
        time.sleep(float(sys.argv[2]))
        return int(sys.argv[3])
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
