"""One JSON line: NumPy's BLAS pools as threadpoolctl sees them, every thread's CPUs.

Run as a replica. OpenBLAS starts its worker threads when it loads, so after one
matrix product every thread it will use exists and can be read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy
from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "BLIS_", "NUMEXPR_")


def _status_field(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return ""


def threads() -> list[dict[str, object]]:
    found = []
    for task in sorted(Path("/proc/self/task").iterdir(), key=lambda p: int(p.name)):
        try:
            text = (task / "status").read_text()
        except FileNotFoundError:
            continue
        found.append(
            {
                "tid": int(task.name),
                "name": _status_field(text, "Name:"),
                "cpus": _status_field(text, "Cpus_allowed_list:"),
            }
        )
    return found


def main() -> None:
    a = numpy.ones((256, 256))
    float((a @ a).sum())
    pools = [
        {"api": p["user_api"], "library": p["internal_api"], "num_threads": p["num_threads"]}
        for p in threadpool_info()
    ]
    env = {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)}
    print(json.dumps({"pools": pools, "threads": threads(), "env": env}), flush=True)


if __name__ == "__main__":
    main()
