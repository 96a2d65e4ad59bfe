"""Pure decisions about a replica's environment, its launcher and the control socket path.

Everything here is a function of what it is given (an environment mapping,
a Config, a uid): no I/O, no ``os.environ``. The ``ctl`` client imports it to
find the socket ``serve`` made, so it stays light: stdlib and
``supervisor.config`` only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, ConfigError

# Inherited variables that make an OpenMP runtime ignore OMP_PLACES/OMP_PROC_BIND
# (libgomp: GOMP_CPU_AFFINITY; LLVM libomp and Intel libiomp5: the KMP_* ones).
OVERRIDE_VARS = ("GOMP_CPU_AFFINITY", "KMP_AFFINITY", "KMP_HW_SUBSET", "KMP_PLACE_THREADS")
# BLAS and numexpr pools size themselves from these, not from OMP_NUM_THREADS alone.
BLAS_THREAD_VARS = (
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_OMP_BINDING_VARS = ("OMP_PLACES", "OMP_PROC_BIND")
_THREADS_RE = re.compile(r"\s*(\d+)")

# The launcher's per-task variables: a replica's rank is its own, not the supervisor's.
LAUNCHER_TASK_VARS = (
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_CPUS_PER_TASK",
    "RANK",
    "LOCAL_RANK",
)
LAUNCHER_TASK_PREFIXES = ("SLURM_CPU_BIND",)  # SLURM_CPU_BIND, _TYPE, _LIST, _VERBOSE

SOCKET_SUFFIX = ".sock"
_STEM_MAX = 32  # keeps NAME.sock well inside sun_path's 108 bytes
_STEM_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


# -- placement hygiene ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementEnv:
    """What a bound replica's environment gains and loses, and what to tell the user.

    The child's environment is ``{k: v for k, v in inherited.items() if k not
    in removed} | added``.
    """

    added: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def apply(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """The environment a child gets from ``inherited``."""
        return {k: v for k, v in inherited.items() if k not in self.removed} | self.added


def placement_env(
    inherited: Mapping[str, str],
    derived: Mapping[str, str],
    group_env: Mapping[str, str],
    *,
    omp_bind: str,
    place_cpus: int,
    replica: str,
) -> PlacementEnv:
    """Decide a bound replica's OpenMP/BLAS environment.

    ``derived`` is ``topology.omp_env`` of its place (OMP_NUM_THREADS,
    OMP_PLACES, OMP_PROC_BIND=close); ``group_env`` is the group's own env,
    placeholders expanded, which wins over everything derived. ``omp_bind``
    "spread" sets OMP_PROC_BIND=spread; "none" leaves threads free inside the
    place (no OMP_PLACES/OMP_PROC_BIND, inherited ones removed too).
    """
    if omp_bind not in ("close", "spread", "none"):
        raise ValueError(f"omp_bind must be close, spread or none, got {omp_bind!r}")
    added = dict(derived)
    if omp_bind == "spread" and "OMP_PROC_BIND" in added:
        added["OMP_PROC_BIND"] = "spread"
    elif omp_bind == "none":
        for key in _OMP_BINDING_VARS:
            added.pop(key, None)
    threads = added.get("OMP_NUM_THREADS")
    if threads is not None:
        added |= dict.fromkeys(BLAS_THREAD_VARS, threads)
    added |= group_env

    candidates = OVERRIDE_VARS + (_OMP_BINDING_VARS if omp_bind == "none" else ())
    removed = tuple(k for k in candidates if k in inherited and k not in group_env)
    warnings = [
        f"{replica}: removed inherited {key}={inherited[key]!r}, which would override the "
        "place's CPU binding in OpenMP/BLAS runtimes (set it in the group's env to keep it)"
        for key in removed
    ]
    for key, value in group_env.items():
        wanted = _threads(value) if key.endswith("_NUM_THREADS") else None
        if wanted is not None and wanted > place_cpus:
            warnings.append(
                f"{replica}: env {key}={value} asks for more threads than the {place_cpus} "
                f"CPU{'s' if place_cpus != 1 else ''} of its place; they will share CPUs"
            )
    return PlacementEnv(added=added, removed=removed, warnings=tuple(warnings))


def _threads(value: str) -> int | None:
    """The outer thread count of ``4`` or a nested OpenMP list ``4,2``; None if unreadable."""
    match = _THREADS_RE.match(value)
    return int(match.group(1)) if match else None


# -- launchers ------------------------------------------------------------------------


def strip_launcher(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the launcher's per-task variables (SLURM_PROCID, RANK, ...)."""
    return {
        k: v
        for k, v in env.items()
        if k not in LAUNCHER_TASK_VARS and not k.startswith(LAUNCHER_TASK_PREFIXES)
    }


DEFAULT_SOURCE = "default (single node)"


@dataclass(frozen=True, kw_only=True, slots=True)
class Launcher:
    """This supervisor's place in a larger job, and where each number came from."""

    node_rank: int = 0
    nodes: int = 1
    source: str = DEFAULT_SOURCE

    @property
    def known_node_rank(self) -> int | None:
        """The node rank when something gave one, None for the single-node default."""
        return None if self.source == DEFAULT_SOURCE else self.node_rank


def detect_launcher(
    environ: Mapping[str, str], *, node_rank: int | None = None, nodes: int | None = None
) -> Launcher:
    """Find the node rank K and node count N, each from the first source that has it.

    K: ``--node-rank``, else ``SLURM_PROCID``, else ``GROUP_RANK``, else
    ``JOB_COMPLETION_INDEX``. N: ``--nodes``, else the launcher K came from
    (``SLURM_NTASKS``; ``WORLD_SIZE / LOCAL_WORLD_SIZE``). A Kubernetes
    indexed Job publishes no count, so ``JOB_COMPLETION_INDEX`` without
    ``--nodes`` is an error rather than a silent guess; so is ``--nodes N>1``
    without a rank. Nonsense (not an integer, negative, K >= N) raises a
    one-line ConfigError naming the variable or flag.
    """
    if node_rank is not None:
        _check_cli("--node-rank", node_rank, 0)
    if nodes is not None:
        _check_cli("--nodes", nodes, 1)
    found = _launcher_in(environ)
    rank_source = "--node-rank"
    if node_rank is None and found is not None:
        node_rank, rank_source = _env_int(environ, found.rank_var, 0), found.rank_var
    nodes_source = "--nodes"
    if nodes is None:
        if node_rank is None:
            return Launcher()
        if found is None or not found.nodes_vars:
            hint = " (the Job's completions)" if rank_source == "JOB_COMPLETION_INDEX" else ""
            raise ConfigError(
                f"{rank_source}: the node rank is {node_rank} but the number of nodes is "
                f"unknown; pass --nodes N{hint}"
            )
        nodes, nodes_source = _node_count(environ, found.nodes_vars), "/".join(found.nodes_vars)
    if node_rank is None:
        if nodes > 1:
            raise ConfigError(f"--nodes: {nodes} nodes but no node rank; pass --node-rank K")
        return Launcher(node_rank=0, nodes=1, source="--nodes")
    if node_rank >= nodes:
        raise ConfigError(
            f"{rank_source}/{nodes_source}: node rank {node_rank} must be below "
            f"the number of nodes {nodes}"
        )
    return Launcher(node_rank=node_rank, nodes=nodes, source=f"{rank_source}/{nodes_source}")


@dataclass(frozen=True, slots=True)
class _Found:
    rank_var: str
    nodes_vars: tuple[str, ...]  # () when the launcher gives no count


def _launcher_in(environ: Mapping[str, str]) -> _Found | None:
    """The first launcher whose rank variable is set (non-empty)."""
    launchers = (
        ("SLURM_PROCID", ("SLURM_NTASKS",)),
        ("GROUP_RANK", ("WORLD_SIZE", "LOCAL_WORLD_SIZE")),
        ("JOB_COMPLETION_INDEX", ()),
    )
    for rank_var, nodes_vars in launchers:
        if environ.get(rank_var):
            present = all(environ.get(v) for v in nodes_vars)
            return _Found(rank_var, nodes_vars if present else ())
    return None


def _node_count(environ: Mapping[str, str], variables: tuple[str, ...]) -> int:
    """``SLURM_NTASKS``, or ``WORLD_SIZE / LOCAL_WORLD_SIZE`` (which must divide)."""
    total = _env_int(environ, variables[0], 1)
    if len(variables) == 1:
        return total
    per_node = _env_int(environ, variables[1], 1)
    if total % per_node:
        raise ConfigError(
            f"{variables[0]}/{variables[1]}: {total} is not a multiple of {per_node}, "
            "so the number of nodes is unclear; pass --nodes N"
        )
    return total // per_node


def _check_cli(flag: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{flag}: must be an integer >= {minimum}, got {value!r}")


def _env_int(environ: Mapping[str, str], var: str, minimum: int) -> int:
    text = environ.get(var, "").strip()
    if not text.isdigit() or int(text) < minimum:
        raise ConfigError(
            f"launcher: {var}={environ.get(var, '')!r} must be an integer >= {minimum}"
        )
    return int(text)


# -- the control socket ---------------------------------------------------------------


def control_socket_path(
    config: Config, *, node_rank: int | None, environ: Mapping[str, str], euid: int
) -> str | None:
    """Where ``serve`` makes its control socket and ``ctl -c`` looks for it; None for none.

    ``socket = "auto"``: ``$XDG_RUNTIME_DIR/placevisor/NAME.sock`` (an
    absolute XDG_RUNTIME_DIR only), else ``/run/placevisor/NAME.sock`` as
    root, else ``/tmp/placevisor-UID/NAME.sock``; NAME is the config file's
    stem, "-", the first 8 hex digits of sha256 of its absolute path, and
    "-nK" when a node rank K is known. An explicit path is used as written,
    relative to the config's directory.
    """
    setting = config.control.socket
    if setting == "":
        return None
    if setting != "auto":
        return str(config.base_dir / setting)
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        directory = Path(runtime) / "placevisor"
    elif euid == 0:
        directory = Path("/run/placevisor")
    else:
        directory = Path(f"/tmp/placevisor-{euid}")
    return str(directory / (socket_name(config, node_rank=node_rank) + SOCKET_SUFFIX))


def socket_name(config: Config, *, node_rank: int | None) -> str:
    """NAME in the auto socket path: stem, hash of the absolute config path, node rank."""
    config_path = config.base_dir / Path(config.source).name
    digest = hashlib.sha256(str(config_path).encode("utf-8", "surrogateescape")).hexdigest()
    stem = _STEM_UNSAFE_RE.sub("_", Path(config.source).stem).strip("_.-") or "config"
    name = f"{stem[:_STEM_MAX]}-{digest[:8]}"
    return name if node_rank is None else f"{name}-n{node_rank}"
