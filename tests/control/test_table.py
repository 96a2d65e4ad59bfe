"""The status table: aligned, at most 80 columns, long names cut, colour only when asked."""

from __future__ import annotations

from typing import Any

from supervisor.control.table import format_cpulist, format_duration, render


def replica(i: int, name: str = "", **kw: Any) -> dict[str, Any]:
    item = {
        "name": name or f"engine_{i}",
        "group": "engine",
        "state": "running",
        "ready": True,
        "pid": 100000 + i,
        "uptime": 3725.0,
        "restarts": 2,
        "cpus": [0, 1, 2, 3, 8],
        "nodes": [0],
        "placement": "ok",
        "last_exit": None,
    }
    return {**item, **kw}


def test_columns_align_and_every_value_shows() -> None:
    text = render([replica(0), replica(1, last_exit="exited with 3", state="backoff")])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NAME", "GROUP", "STATE"]
    assert "engine_1" in lines[2] and "exited with 3" in lines[2] and "0-3,8" in lines[1]
    col = lines[0].index("STATE")
    assert lines[1][col:].startswith("running") and lines[2][col:].startswith("backoff")
    assert "1h02m" in lines[1] and "\x1b[" not in text


def test_long_names_are_cut_to_fit_80_columns() -> None:
    long = "a_replica_name_far_too_long_for_any_sane_table_column_0"
    rows = [
        replica(
            0,
            long,
            group="a_group_name_that_is_also_too_long",
            last_exit="killed by SIGKILL (out of memory?)",
            cpus=list(range(0, 64, 2)),
            pid=4194303,
        )
    ]
    text = render(rows, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "~" in text and long[:6] in text


def test_colour_only_on_the_state_when_asked() -> None:
    text = render([replica(0, state="failed")], color=True)
    assert "\x1b[31mfailed" in text


def test_helpers() -> None:
    assert format_cpulist([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_cpulist([]) == ""
    assert [format_duration(s) for s in (None, 5, 65, 3700, 93784)] == [
        "-",
        "5s",
        "1m05s",
        "1h01m",
        "1d2h",
    ]
