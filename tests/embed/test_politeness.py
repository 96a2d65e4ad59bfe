"""Embedded, the supervisor leaves the host's process state alone.

No signal handler, no structlog configuration, no event-loop policy, no
``sys.exit``: a failing group is a return value (``wait() == 1``), and the
host's own logger receives the supervisor's events.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import pytest
import structlog

from supervisor import Supervisor
from tests.embed.util import Lines
from tests.helpers import config, group

pytestmark = pytest.mark.anyio


def _process_state() -> tuple[Any, ...]:
    return (
        signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGCHLD),
        structlog.get_config(),
        asyncio.get_event_loop_policy(),
    )


async def test_failing_group_changes_nothing_and_never_exits(
    no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[object] = []
    monkeypatch.setattr(sys, "exit", lambda code=None: exits.append(code))
    before = _process_state()
    cfg = config(
        group("bad", "import sys; sys.exit(3)", restart="never"),
        group("ok", "import time; print('ready', flush=True); time.sleep(60)"),
        shutdown_timeout=2.0,
    )
    async with Supervisor(cfg, on_output=Lines()) as sup:
        assert _process_state() == before
        assert await sup.wait() == 1
    assert _process_state() == before
    assert exits == []
    assert {s.name: s.state for s in sup.status()} == {"bad_0": "failed", "ok_0": "exited"}


async def test_events_go_to_the_hosts_stdlib_logger(
    no_leaks: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The recipe in docs/embedding.md for a host that logs with the stdlib."""
    before = structlog.get_config()
    logger = structlog.wrap_logger(
        logging.getLogger("host.workers"),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    )
    cfg = config(group("w", "print('hi')", restart="never"))
    with caplog.at_level(logging.INFO, logger="host.workers"):
        async with Supervisor(cfg, on_output=Lines(), logger=logger) as sup:
            assert await sup.wait() == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "host.workers"]
    assert any(m.startswith("event='replica_started'") and "replica='w_0'" in m for m in messages)
    assert any(m.startswith("event='replica_exited'") for m in messages)
    assert structlog.get_config() == before
