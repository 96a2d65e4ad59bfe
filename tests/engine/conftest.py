"""Engine-test fixtures: a recording logger."""

from __future__ import annotations

import pytest

from tests.engine.util import Events


@pytest.fixture
def events() -> Events:
    return Events()
