"""placevisor: an asyncio-native, placement-aware process supervisor.

Names are imported on first use, so ``python -m supervisor ctl`` does not
pay for the engine, structlog and anyio it never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import (
        Config,
        ConfigError,
        GroupConfig,
        SupervisorSettings,
        TopologySettings,
        load_config,
    )
    from .engine import Supervisor
    from .errors import (
        NoFreePlaceError,
        NotRunningError,
        RollingRestartError,
        StoppingError,
        SupervisorError,
        UnknownGroupError,
        UnknownReplicaError,
    )
    from .output import OutputLine
    from .plan import LaunchPlan, ReplicaPlan, build_plan
    from .replica import ReplicaStatus

_WHERE = {
    "Config": "config",
    "ConfigError": "config",
    "GroupConfig": "config",
    "SupervisorSettings": "config",
    "TopologySettings": "config",
    "load_config": "config",
    "Supervisor": "engine",
    "SupervisorError": "errors",
    "UnknownReplicaError": "errors",
    "UnknownGroupError": "errors",
    "NoFreePlaceError": "errors",
    "NotRunningError": "errors",
    "StoppingError": "errors",
    "RollingRestartError": "errors",
    "OutputLine": "output",
    "LaunchPlan": "plan",
    "ReplicaPlan": "plan",
    "build_plan": "plan",
    "ReplicaStatus": "replica",
}

__all__ = [
    "Config",
    "ConfigError",
    "GroupConfig",
    "LaunchPlan",
    "NoFreePlaceError",
    "NotRunningError",
    "OutputLine",
    "ReplicaPlan",
    "ReplicaStatus",
    "RollingRestartError",
    "StoppingError",
    "Supervisor",
    "SupervisorError",
    "SupervisorSettings",
    "TopologySettings",
    "UnknownGroupError",
    "UnknownReplicaError",
    "build_plan",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
