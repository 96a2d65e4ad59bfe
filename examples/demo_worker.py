"""A demo replica: says where it runs, does a little work, reports the time."""

import os
import sys
import time


def main() -> None:
    name = os.environ["SUPERVISOR_NAME"]
    cpus = sorted(os.sched_getaffinity(0))
    print(
        f"{name}: running on CPUs {cpus}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}"
        f", OMP_PLACES={os.environ.get('OMP_PLACES', '-')}",
        flush=True,
    )
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for i in range(rounds):
        start = time.perf_counter()
        total = sum(k * k for k in range(1_500_000))  # a small CPU-bound job
        took = (time.perf_counter() - start) * 1000
        print(
            f"{name}: job {i + 1}/{rounds} took {took:.1f} ms (checksum {total % 997})", flush=True
        )
    print(f"{name}: done", flush=True)


if __name__ == "__main__":
    main()
