"""The public embedding API: what ``supervisor`` exports, status records,
restart and signal by name, and a Config built in code checked like a file.
"""

from __future__ import annotations

import dataclasses
import io
import signal
from pathlib import Path

import psutil
import pytest

import supervisor
from supervisor import ConfigError, GroupConfig, Supervisor, load_config
from tests.embed.util import STATUS_FIELDS, token, tree_group
from tests.helpers import PY, config, eventually, procs_with

pytestmark = pytest.mark.anyio

WORKER = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: print('usr1', flush=True))
print('ready', flush=True)
while True:
    time.sleep(60)
"""


def test_public_names_are_exported() -> None:
    for name in (
        "Supervisor",
        "load_config",
        "Config",
        "GroupConfig",
        "OutputLine",
        "ReplicaStatus",
    ):
        assert name in supervisor.__all__
    for name in supervisor.__all__:
        assert getattr(supervisor, name) is not None


def test_config_in_code_is_checked_like_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="restart") as in_code:
        GroupConfig(name="w", command=(PY,), restart="sometimes")  # type: ignore[arg-type]
    toml = tmp_path / "bad.toml"
    toml.write_text(f'[[group]]\nname = "w"\ncommand = ["{PY}"]\nrestart = "sometimes"\n')
    with pytest.raises(ConfigError, match="restart") as from_file:
        load_config(toml)
    assert str(toml) in str(from_file.value) or toml.name in str(from_file.value)
    # The same problem, worded the same way.
    problem = str(in_code.value).split("restart", 1)[1]
    assert problem.split(":", 1)[-1].strip() in str(from_file.value)


async def test_status_restart_and_signal(no_leaks: None) -> None:
    tok = token()
    out = io.BytesIO()
    cfg = config(tree_group("w", tok, WORKER, replicas=2), shutdown_timeout=2.0)
    async with Supervisor(cfg, stdout=out, stderr=out) as sup:
        await eventually(lambda: out.getvalue().count(b"ready") == 2)
        first = {s.name: s for s in sup.status()}
        assert set(first) == {"w_0", "w_1"}
        s0 = first["w_0"]
        fields = {f.name for f in dataclasses.fields(s0)}
        assert fields >= STATUS_FIELDS
        assert (s0.group, s0.index, s0.state, s0.restarts) == ("w", 0, "running", 0)
        assert s0.pid is not None and psutil.Process(s0.pid).is_running()
        assert s0.started_at is not None and s0.last_exit is None

        w1 = f"(w_1 pid={first['w_1'].pid}) usr1\n".encode()
        await sup.signal("w_1", "SIGUSR1")  # by name
        await eventually(lambda: out.getvalue().count(w1) == 1)
        await sup.signal("w_1", signal.SIGUSR1)  # by number (a pending signal would merge)
        await eventually(lambda: out.getvalue().count(w1) == 2)

        await sup.restart("w_0")
        await eventually(
            lambda: sup.status()[0].state == "running" and sup.status()[0].pid != s0.pid
        )
        again = sup.status()[0]
        assert again.restarts == 1
        assert again.last_exit == "stopped by SIGTERM"
        assert not psutil.pid_exists(s0.pid) or psutil.Process(s0.pid).status() == "zombie"
        assert sup.status()[1].pid == first["w_1"].pid  # the other one was left alone

        with pytest.raises(KeyError, match="w_7"):
            await sup.restart("w_7")
        assert await sup.stop() == 0
    assert procs_with(tok) == []
