"""Every malformed config in tests/bad_configs gives exactly its one-line error."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.check import run_check

CORPUS = Path(__file__).resolve().parent.parent / "bad_configs"
ROOT = CORPUS.parent.parent
CASES = sorted(p.name for p in CORPUS.glob("*.toml"))


def test_corpus_is_large_and_paired() -> None:
    assert len(CASES) >= 40
    for name in CASES:
        assert (CORPUS / name).with_suffix(".err").is_file(), name


@pytest.mark.parametrize("name", CASES)
def test_bad_config_in_process(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    out, err = io.StringIO(), io.StringIO()
    assert run_check(name, as_json=False, out=out, err=err) == 2
    assert out.getvalue() == ""
    expected = (CORPUS / name).with_suffix(".err").read_text()
    assert err.getvalue() == expected
    assert expected.count("\n") == 1 and expected.startswith(f"{name}: ")


@pytest.mark.parametrize(
    "name", ["01_toml_syntax.toml", "07_typo_group_key.toml", "69_too_many_bound.toml"]
)
def test_bad_config_through_cli(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", name],
        cwd=CORPUS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (CORPUS / name).with_suffix(".err").read_text()
