"""Exit statuses decoded into words a person acts on."""

from __future__ import annotations

import signal

import pytest

from supervisor.exits import describe_exit, parse_signal, signal_name


@pytest.mark.parametrize(
    ("rc", "sent", "words"),
    [
        (0, None, "exited with code 0"),
        (3, None, "exited with code 3"),
        (-9, None, "killed by SIGKILL (out of memory?)"),
        (-11, None, "killed by SIGSEGV (segmentation fault)"),
        (-6, None, "killed by SIGABRT (aborted)"),
        (-15, None, "killed by SIGTERM"),
        (-15, 15, "stopped by SIGTERM"),
        (-9, 15, "killed by SIGKILL (out of memory?)"),
        (-200, None, "killed by signal 200"),
    ],
)
def test_describe_exit(rc: int, sent: int | None, words: str) -> None:
    assert describe_exit(rc, sent=sent) == words


@pytest.mark.parametrize("text", ["SIGTERM", "TERM", "term", " 15 ", "SigTerm"])
def test_parse_signal_spellings(text: str) -> None:
    assert parse_signal(text) is signal.SIGTERM


@pytest.mark.parametrize("text", ["SIGNOPE", "", "999"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_signal(text)


def test_signal_name_of_unknown_number() -> None:
    assert signal_name(9) == "SIGKILL"
    assert signal_name(250) == "signal 250"
