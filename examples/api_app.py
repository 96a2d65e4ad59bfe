"""A small API server for examples/api_pool.toml: what a vLLM API server is to its pool.

Each replica answers ``GET /`` with its pid and replica name, so a client
can tell which replica served it, and ``GET /health`` with 200. It never
binds a port: the supervisor passes it the shared ``[[socket]]``.

- ASGI (``app``): ``uvicorn examples.api_app:app --fd {fd:http}``.
- WSGI (``wsgi``): ``gunicorn examples.api_app:wsgi``; gunicorn adopts the
  socket from ``LISTEN_FDS`` itself and sends ``READY=1`` to NOTIFY_SOCKET.

``API_STARTUP_DELAY`` (seconds) stands in for loading a tokenizer or a
model at startup: the server is not ready before it is over.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


def _body() -> str:
    return json.dumps({"pid": os.getpid(), "replica": os.environ.get("SUPERVISOR_NAME", "")})


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The ASGI application (lifespan: the startup delay; http: the pid, or 200 on /health)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(float(os.environ.get("API_STARTUP_DELAY", "0")))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b"ok" if scope["path"] == "/health" else _body().encode()
    headers = [(b"content-type", b"application/json"), (b"x-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    """The same answers as a WSGI application, for gunicorn's own workers."""
    body = b"ok" if environ.get("PATH_INFO") == "/health" else _body().encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Pid", str(os.getpid())),
        ],
    )
    return [body]
