"""Routes of the control API: one request in, one Supervisor call, one reply out.

Every ``SupervisorError`` subclass maps to a status in ``ERROR_STATUS``; a
reply body is JSON, errors as ``{"error": "...", "kind": "ClassName"}``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..errors import (
    NoFreePlaceError,
    NotRunningError,
    RollingRestartError,
    StoppingError,
    SupervisorError,
    UnknownGroupError,
    UnknownReplicaError,
)
from ..replica import ReplicaStatus
from .http import Request

if TYPE_CHECKING:
    from ..engine import Supervisor

JSON = "application/json"
DEFAULT_TAIL_LINES = 10
MAX_TAIL_LINES = 100_000

# One table: the most specific class found in an error's MRO wins.
ERROR_STATUS: dict[type[Exception], int] = {
    UnknownGroupError: 404,
    UnknownReplicaError: 404,
    ConfigError: 400,
    NoFreePlaceError: 409,
    NotRunningError: 409,
    StoppingError: 409,
    RollingRestartError: 409,
    SupervisorError: 409,
}

READ_ONLY_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/v1/status"})
REPLICA_VERBS = frozenset({"start", "stop", "restart", "signal"})
GROUP_VERBS = REPLICA_VERBS | {"scale"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON


@dataclass(frozen=True)
class Follow:
    """Stream ``initial`` and then the followed replicas' new lines."""

    replicas: list[str]
    initial: bytes


class BadRequest(Exception):
    """The request itself is wrong (400)."""


def error_status(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        status = ERROR_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def json_reply(status: int, value: object) -> Reply:
    return Reply(status, json.dumps(value).encode() + b"\n")


def error_reply(status: int, message: str, kind: str = "") -> Reply:
    body: dict[str, str] = {"error": message}
    if kind:
        body["kind"] = kind
    return json_reply(status, body)


_STATUS_FIELDS = tuple(f.name for f in dataclasses.fields(ReplicaStatus))


def status_document(sup: Supervisor, now: float | None = None) -> dict[str, Any]:
    """``GET /v1/status``: every replica as a dict plus its uptime, and readiness."""
    now = time.time() if now is None else now
    replicas = []
    fields = _STATUS_FIELDS
    for st in sup.status():
        # Not dataclasses.asdict: its deep copy costs a visible share of 1,000 rows.
        item = {f: getattr(st, f) for f in fields}
        started = st.started_at
        live = st.pid is not None and st.state in ("starting", "running", "stopping")
        item["uptime"] = round(now - started, 3) if live and started is not None else None
        replicas.append(item)
    return {"replicas": replicas, "ready": sup.is_ready(), "groups": sup.group_names()}


async def handle(sup: Supervisor, request: Request, *, read_only: bool) -> Reply | Follow:
    """Serve one request; SupervisorErrors become their status, never an exception."""
    if read_only and request.path not in READ_ONLY_PATHS:
        return error_reply(403, "this listener is read-only; use the control socket")
    try:
        return await _route(sup, request)
    except BadRequest as exc:
        return error_reply(400, str(exc))
    except SupervisorError as exc:
        return error_reply(error_status(exc), str(exc), type(exc).__name__)


async def _route(sup: Supervisor, request: Request) -> Reply | Follow:
    method, path = request.method, request.path
    parts = [p for p in path.split("/") if p]
    if path in ("/healthz", "/readyz", "/v1/status", "/metrics") or (
        len(parts) == 4 and parts[:2] == ["v1", "replicas"] and parts[3] == "output"
    ):
        if method != "GET":
            return error_reply(405, f"{path} takes GET")
        return await _get(sup, request, parts)
    if (
        path == "/v1/reload"
        or (len(parts) == 4 and parts[:2] == ["v1", "replicas"] and parts[3] in REPLICA_VERBS)
        or (len(parts) == 4 and parts[:2] == ["v1", "groups"] and parts[3] in GROUP_VERBS)
    ):
        if method != "POST":
            return error_reply(405, f"{path} takes POST")
        return await _post(sup, request, parts)
    return error_reply(404, f"no such endpoint: {method} {path}")


async def _get(sup: Supervisor, request: Request, parts: list[str]) -> Reply | Follow:
    path = request.path
    if path == "/healthz":
        return json_reply(200, {"status": "running"})
    if path == "/readyz":
        ready = sup.is_ready()
        return json_reply(200 if ready else 503, {"ready": ready})
    if path == "/v1/status":
        return json_reply(200, status_document(sup))
    if path == "/metrics":
        import anyio

        from .metrics import render_metrics, snapshot, wants_classic_text

        classic = wants_classic_text(request.headers.get("accept", ""))
        body, content_type = await anyio.to_thread.run_sync(render_metrics, snapshot(sup), classic)
        return Reply(200, body, content_type)
    # /v1/replicas/NAME/output
    names = sup.resolve(parts[2])
    lines = _int_param(request, "lines", DEFAULT_TAIL_LINES, 0, MAX_TAIL_LINES)
    initial = b"".join(sup.history.last(names, lines))
    if request.query.get("follow", ["0"])[-1] in ("1", "true", "yes"):
        return Follow(names, initial)
    return Reply(200, initial, "text/plain; charset=utf-8")


async def _post(sup: Supervisor, request: Request, parts: list[str]) -> Reply:
    try:
        body = request.json()
    except ValueError as exc:
        raise BadRequest(f"the body is not a JSON object: {exc}") from None
    if request.path == "/v1/reload":
        await sup.reload()
        return json_reply(200, {"reloaded": True})
    kind, name, verb = parts[1], parts[2], parts[3]
    if kind == "groups" and name not in sup.group_names():
        known = ", ".join(sup.group_names())
        raise UnknownGroupError(f"no group named {name!r} (groups: {known})")
    names = sup.resolve(name)  # UnknownReplicaError names what exists
    if verb == "start":
        await sup.start_replica(name)
    elif verb == "stop":
        await sup.stop_replica(name)
    elif verb == "restart":
        rolling = body.get("rolling", False)
        if not isinstance(rolling, bool):
            raise BadRequest('"rolling" must be true or false')
        await sup.restart(name, rolling=rolling)
    elif verb == "signal":
        sig = body.get("signal")
        if not isinstance(sig, str | int) or isinstance(sig, bool):
            raise BadRequest('give {"signal": "SIGUSR1"} (a name or a number)')
        try:
            await sup.signal(name, sig)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    else:  # scale
        n = body.get("replicas")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise BadRequest('give {"replicas": N} with N >= 0')
        await sup.scale(name, n)
        names = [st.name for st in sup.status() if st.group == name]
    return json_reply(200, {"ok": True, "replicas": names})


def _int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key, [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise BadRequest(f"{key}={value} is out of range {low}..{high}")
    return value
