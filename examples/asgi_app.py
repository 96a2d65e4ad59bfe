"""A Starlette app whose lifespan runs a worker pool under placevisor.

Serve it from the repository root::

    uvicorn examples.asgi_app:app --host 127.0.0.1 --port 8000

``PLACEVISOR_CONFIG`` names the TOML file (default: examples/asgi_workers.toml).

- ``GET /workers``: one JSON record per replica (name, group, index, pid,
  state, restarts, cpus, nodes, started_at, last_exit, last_returncode).
- ``POST /workers/{name}/restart``: stops that replica (bounded) and starts
  it again in its place; 202 with its record, 404 for an unknown name, 409
  when it cannot restart (the pool is stopping, or the replica failed for good).

The workers' output goes to uvicorn's stdout, prefixed ``(worker_0 pid=...)``;
the supervisor's events go through uvicorn's own logger. uvicorn owns the
signals: on SIGTERM/Ctrl-C it ends the lifespan, and leaving
``async with Supervisor(...)`` stops every worker and its descendants.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from supervisor import ReplicaStatus, Supervisor, load_config

DEFAULT_CONFIG = Path(__file__).with_name("asgi_workers.toml")


def _record(status: ReplicaStatus) -> dict[str, Any]:
    return dataclasses.asdict(status)


def _logger() -> Any:
    """The supervisor's events as lines of uvicorn's logger (no global structlog config)."""
    return structlog.wrap_logger(
        logging.getLogger("uvicorn.error.placevisor"),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    path = os.environ.get("PLACEVISOR_CONFIG", str(DEFAULT_CONFIG))
    async with Supervisor(load_config(path), logger=_logger()) as sup:
        app.state.supervisor = sup
        yield


async def workers(request: Request) -> JSONResponse:
    sup: Supervisor = request.app.state.supervisor
    return JSONResponse([_record(s) for s in sup.status()])


async def restart(request: Request) -> JSONResponse:
    sup: Supervisor = request.app.state.supervisor
    name = request.path_params["name"]
    try:
        await sup.restart(name)
    except KeyError:
        return JSONResponse({"error": f"no worker named {name!r}"}, status_code=404)
    except RuntimeError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    record = next(_record(s) for s in sup.status() if s.name == name)
    return JSONResponse(record, status_code=202)


app = Starlette(
    routes=[
        Route("/workers", workers, methods=["GET"]),
        Route("/workers/{name}/restart", restart, methods=["POST"]),
    ],
    lifespan=lifespan,
)
