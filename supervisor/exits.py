"""Decode a child's wait status into words a person acts on."""

from __future__ import annotations

import signal

_HINTS: dict[int, str] = {
    signal.SIGKILL: "out of memory?",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "arithmetic error",
}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(returncode: int, *, sent: int | None = None) -> str:
    """``returncode`` is Popen-style: negative for death by signal."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    signum = -returncode
    name = signal_name(signum)
    if sent is not None and signum == sent:
        return f"stopped by {name}"
    hint = _HINTS.get(signum)
    return f"killed by {name} ({hint})" if hint else f"killed by {name}"


def parse_signal(name: str) -> signal.Signals:
    """Accept ``SIGTERM``, ``TERM`` or ``15``; raise ValueError otherwise."""
    text = name.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None
