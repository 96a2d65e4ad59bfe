"""Shared helpers for the topology tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # so a bare `pytest` finds the package, as `python -m pytest` does
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def data_dir() -> Path:
    return DATA
