"""The CLI: text and JSON output, and bad input as one line on stderr with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from topology.cli import main
from topology.testing import lscpu_json, synthetic, write_sysfs

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
XEON = DATA / "ubicloud_lscpu-Jye_2socket_2numa_4core_8thread_numeric-fields.json"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "topology", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def test_json_from_a_dump_as_a_subprocess() -> None:
    done = _run("--lscpu", str(XEON), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["nodes"] == [{"id": 0, "cpus": [0, 1, 2, 3]}, {"id": 1, "cpus": [4, 5, 6, 7]}]
    assert [c["cpus"] for c in out["cores"]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert all(c["allowed"] and c["online"] for c in out["cpus"])
    assert out["places"]["nodes"] == [
        {"cpus": [0, 2], "nodes": [0]},
        {"cpus": [4, 6], "nodes": [1]},
    ]
    assert out["places"]["all"] == [{"cpus": [0, 2, 4, 6], "nodes": [0, 1]}]
    assert "gpus" not in out["places"]


def test_bad_file_is_one_line_and_exit_2() -> None:
    done = _run("--lscpu", str(DATA / "hwloc_power7_8numa_64core_SMT4_256thread_lstopo.txt"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("python -m topology: ") and "lstopo.txt: line 1" in done.stderr


@pytest.mark.parametrize("argv", [["--bogus"], ["--smt", "x"], ["--smt", "-1"],
                                  ["--lscpu", "a", "--sysfs", "b"], ["--lscpu", "/no/such"]])
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, prog="python -m supervisor topology") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m supervisor topology: ")


def test_text_marks_offline_and_shows_gpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = synthetic(sockets=2, cores_per_socket=2, threads_per_core=2, offline=[7])
    write_sysfs(topo, tmp_path, gpus=[("0000:17:00.0", "0x10de", 1)])
    assert main(["--sysfs", str(tmp_path), "--smt", "0"]) == 0
    out = capsys.readouterr().out
    assert "node 1: CPUs 2-3,6-7 (allowed 2-3,6)" in out
    assert "core 3: 3 7(offline)" in out
    assert "gpus (1): 2-3,6" in out
    assert "nodes (2): 0-1,4-5 | 2-3,6" in out


def test_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["places"]["all"]


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8,192-CPU dump: its text output (~120 KB) outgrows a 64 KB pipe buffer, so a
    reader that stops after one line always leaves the writer with EPIPE."""
    topo = synthetic(sockets=4, cores_per_socket=1024, threads_per_core=2, cores_per_llc=8)
    path = tmp_path_factory.mktemp("dump") / "big.json"
    path.write_text(json.dumps(lscpu_json(topo)))
    return path


@pytest.mark.parametrize("module", [["supervisor", "topology"], ["topology"]])
def test_reader_closing_early_is_quiet_regression(big_dump: Path, module: list[str]) -> None:
    """`python -m supervisor topology | head -1` printed a BrokenPipeError traceback about
    one run in three. A real pipe closed after the first line, 10 runs per entry point."""
    argv = [sys.executable, "-m", *module, "--lscpu", str(big_dump)]
    runs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        for _ in range(10)
    ]
    for proc in runs:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"source: ")
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0
        assert err == b""
