"""placevisor: an asyncio-native, placement-aware process supervisor."""

from .config import (
    Config,
    ConfigError,
    GroupConfig,
    SupervisorSettings,
    TopologySettings,
    load_config,
)
from .engine import Supervisor
from .output import OutputLine
from .plan import LaunchPlan, ReplicaPlan, build_plan
from .replica import ReplicaStatus

__all__ = [
    "Config",
    "ConfigError",
    "GroupConfig",
    "LaunchPlan",
    "OutputLine",
    "ReplicaPlan",
    "ReplicaStatus",
    "Supervisor",
    "SupervisorSettings",
    "TopologySettings",
    "build_plan",
    "load_config",
]
