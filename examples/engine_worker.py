"""A stand-in for an inference engine process, for examples/api_pool.toml.

It "loads a model" (sleeps ``ENGINE_LOAD_SECONDS``, default 2), then tells
the supervisor ``READY=1`` over ``$NOTIFY_SOCKET`` (the sd_notify protocol:
one datagram of ``KEY=VALUE`` lines) and keeps sending ``WATCHDOG=1`` while
its loop runs. The API servers start only once it is ready (``after``).
SIGTERM ends it cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

stop = threading.Event()


def notify(*lines: str) -> None:
    """Send one sd_notify datagram (nothing happens without NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(lines).encode(), address)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    name = os.environ.get("SUPERVISOR_NAME", "engine")
    cpus = sorted(os.sched_getaffinity(0))
    notify(f"STATUS=loading weights on CPUs {cpus}")
    print(f"{name}: loading on CPUs {cpus}", flush=True)
    if stop.wait(float(os.environ.get("ENGINE_LOAD_SECONDS", "2"))):
        return
    notify("READY=1", "STATUS=serving")
    print(f"{name}: ready", flush=True)
    while not stop.wait(1.0):
        notify("WATCHDOG=1")  # the group's watchdog expects one at least every 5 s
    notify("STOPPING=1")
    print(f"{name}: stopped", flush=True)


if __name__ == "__main__":
    main()
