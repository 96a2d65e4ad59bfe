"""``python -m supervisor ctl``: the client of the control socket.

It imports little (stdlib, h11; curses only for ``top``) so ``ctl status``
starts fast. Exit statuses: 0 done, 1 refused (no free place, a failed
rolling restart, not ready), 2 usage or unknown name or invalid config,
3 no supervisor on the socket.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple, NoReturn

import h11

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_SUPERVISOR = 3
READ_CHUNK = 65536

# HTTP status -> exit status of the command that got it.
STATUS_EXIT = {400: EXIT_USAGE, 404: EXIT_USAGE, 405: EXIT_USAGE, 409: EXIT_REFUSED}


class NoSupervisor(Exception):
    """Nothing serves the socket (or we may not use it): exit 3."""


class CtlError(Exception):
    """A one-line failure with its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Response(NamedTuple):
    """A reply: its status and body (a NamedTuple: dataclasses would import inspect)."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


class Client:
    """HTTP/1.1 over the unix socket, one connection per request (h11 does the protocol)."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NoSupervisor(
                f"no supervisor is serving {self.path} (is serve running?)"
            ) from None
        except PermissionError:
            sock.close()
            raise NoSupervisor(f"cannot use {self.path}: permission denied") from None
        except OSError as exc:
            sock.close()
            raise NoSupervisor(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        return sock

    def _events(self, method: str, target: str, body: object | None) -> Iterator[h11.Event]:
        sock = self._connect()
        with sock:
            conn = h11.Connection(h11.CLIENT)
            headers = [("Host", "localhost"), ("User-Agent", "placevisor-ctl")]
            data = b""
            if method != "GET":
                data = json.dumps(body if body is not None else {}).encode()
                headers += [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(data))),
                ]
            out = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
            if data:
                out += conn.send(h11.Data(data=data)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            try:
                sock.sendall(out)
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(sock.recv(READ_CHUNK))
                        continue
                    if not isinstance(event, h11.Event):  # PAUSED: the reply is complete
                        return
                    yield event
                    if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return
            except (h11.RemoteProtocolError, ConnectionResetError, BrokenPipeError) as exc:
                raise NoSupervisor(f"the supervisor on {self.path} hung up: {exc}") from None

    def request(self, method: str, target: str, body: object | None = None) -> Response:
        status = 0
        chunks: list[bytes] = []
        for event in self._events(method, target, body):
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
        return Response(status, b"".join(chunks))

    def stream(self, target: str) -> Iterator[Response]:
        """A GET whose body arrives piece by piece: the status, then each piece."""
        for event in self._events("GET", target, None):
            if isinstance(event, h11.Response):
                yield Response(event.status_code, b"")
            elif isinstance(event, h11.Data):
                yield Response(0, bytes(event.data))


def checked(resp: Response) -> Any:
    """The JSON of a 2xx reply; a CtlError carrying the server's one-line error otherwise."""
    if 200 <= resp.status < 300:
        return resp.json()
    try:
        message = str(resp.json().get("error", ""))
    except (ValueError, AttributeError):
        message = resp.body.decode(errors="replace").strip()
    if resp.status == 403:
        raise NoSupervisor(message or "refused by the supervisor")
    raise CtlError(message or f"HTTP {resp.status}", STATUS_EXIT.get(resp.status, EXIT_REFUSED))


# -- finding the socket ---------------------------------------------------------


def _auto_dir(environ: dict[str, str] | os._Environ[str], euid: int) -> str:
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return os.path.join(runtime, "placevisor")
    return "/run/placevisor" if euid == 0 else f"/tmp/placevisor-{euid}"


def socket_path(args: argparse.Namespace, prog: str) -> str:
    if args.socket:
        return str(args.socket)
    if args.config:
        from ..config import ConfigError, load_config
        from ..envplan import control_socket_path

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise CtlError(str(exc), EXIT_USAGE) from None
        path = control_socket_path(
            config, node_rank=args.node_rank, environ=os.environ, euid=os.geteuid()
        )
        if path is None:
            raise CtlError(f'{args.config}: [control] socket = "": no control socket', EXIT_USAGE)
        return path
    # Neither: the one supervisor of this user, if there is exactly one.
    directory = _auto_dir(os.environ, os.geteuid())
    try:
        found = sorted(n for n in os.listdir(directory) if n.endswith(".sock"))
    except OSError:
        found = []
    if len(found) == 1:
        return os.path.join(directory, found[0])
    if not found:
        raise NoSupervisor(f"no supervisor socket in {directory}; give -c CONFIG or --socket PATH")
    raise CtlError(
        f"several supervisors in {directory} ({', '.join(found)}); give -c CONFIG or --socket PATH",
        EXIT_USAGE,
    )


# -- commands -------------------------------------------------------------------


def _use_color(stream: Any, environ: dict[str, str] | os._Environ[str]) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not environ.get("NO_COLOR")


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    doc = checked(client.request("GET", "/v1/status"))
    replicas = doc["replicas"]
    if args.names:
        known = {r["name"] for r in replicas} | {r["group"] for r in replicas}
        known |= set(doc.get("groups", []))
        for name in args.names:
            if name not in known:
                raise CtlError(f"no replica or group named {name!r}", EXIT_USAGE)
        wanted = set(args.names)
        replicas = [r for r in replicas if r["name"] in wanted or r["group"] in wanted]
        doc = {**doc, "replicas": replicas}
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    from shutil import get_terminal_size

    from .table import render

    width = get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80
    sys.stdout.write(render(replicas, width=width, color=_use_color(sys.stdout, os.environ)))
    return EXIT_OK


def cmd_ready(client: Client, args: argparse.Namespace) -> int:
    resp = client.request("GET", "/readyz")
    if resp.status == 200:
        print("ready")
        return EXIT_OK
    if resp.status == 503:
        print("not ready")
        return EXIT_REFUSED
    checked(resp)
    return EXIT_REFUSED


def _post(client: Client, path: str, body: dict[str, object], done: str) -> int:
    result = checked(client.request("POST", path, body))
    names = result.get("replicas")
    print(f"{done} {', '.join(names)}" if names else done)
    return EXIT_OK


def _name(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def cmd_verb(client: Client, args: argparse.Namespace) -> int:
    verb = args.command
    body: dict[str, object] = {}
    if verb == "restart" and args.rolling:
        body["rolling"] = True
    if verb == "signal":
        body["signal"] = args.signal
    past = {"start": "started", "stop": "stopped", "restart": "restarted", "signal": "signalled"}
    return _post(client, f"/v1/replicas/{_name(args.name)}/{verb}", body, past[verb])


def cmd_scale(client: Client, args: argparse.Namespace) -> int:
    if args.replicas < 0:
        raise CtlError("scale: N must be 0 or more", EXIT_USAGE)
    body: dict[str, object] = {"replicas": args.replicas}
    return _post(client, f"/v1/groups/{_name(args.group)}/scale", body, f"{args.group} runs")


def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    checked(client.request("POST", "/v1/reload", {}))
    print("reloaded")
    return EXIT_OK


def cmd_tail(client: Client, args: argparse.Namespace) -> int:
    target = f"/v1/replicas/{_name(args.name)}/output?lines={args.lines}"
    if args.follow:
        target += "&follow=1"
    out = sys.stdout.buffer
    try:
        status = 0
        error: list[bytes] = []
        for piece in client.stream(target):
            if piece.status:
                status = piece.status
            elif status == 200:
                out.write(piece.body)
                out.flush()
            else:
                error.append(piece.body)
        if status != 200:
            checked(Response(status, b"".join(error)))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `ctl tail | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    from .top import run_top

    return run_top(client, interval=args.interval)


# -- parsing --------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Talk to a running supervisor over its control socket.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help="find the socket as `serve CONFIG` makes it")
    where.add_argument("--socket", help="the control socket's path")
    p.add_argument("--node-rank", type=int, default=None, help="node rank of a multi-node job")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("status", help="a table of every replica")
    s.add_argument("names", nargs="*", metavar="NAME")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_status)
    sub.add_parser("ready", help="exit 0 when every replica is ready").set_defaults(run=cmd_ready)
    for verb, text in (
        ("start", "start stopped replicas"),
        ("stop", "stop replicas for good"),
        ("restart", "restart replicas"),
    ):
        v = sub.add_parser(verb, help=text)
        v.add_argument("name", metavar="NAME|GROUP")
        if verb == "restart":
            v.add_argument("--rolling", action="store_true", help="one at a time, ready first")
        v.set_defaults(run=cmd_verb)
    g = sub.add_parser("signal", help="send a signal to replicas")
    g.add_argument("name", metavar="NAME|GROUP")
    g.add_argument("signal", metavar="SIG")
    g.set_defaults(run=cmd_verb)
    c = sub.add_parser("scale", help="run N replicas of a group")
    c.add_argument("group", metavar="GROUP")
    c.add_argument("replicas", metavar="N", type=int)
    c.set_defaults(run=cmd_scale)
    sub.add_parser("reload", help="re-read the config (as SIGHUP)").set_defaults(run=cmd_reload)
    t = sub.add_parser("tail", help="the last lines of replicas, -f to follow")
    t.add_argument("name", metavar="NAME|GROUP")
    t.add_argument("-f", "--follow", action="store_true")
    t.add_argument("-n", "--lines", type=int, default=10)
    t.set_defaults(run=cmd_tail)
    top = sub.add_parser("top", help="a live view; q quits")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.set_defaults(run=cmd_top)
    return p


def main(argv: list[str], prog: str = "ctl") -> int:
    try:
        args = parser(prog).parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        client = Client(socket_path(args, prog))
        return int(args.run(client, args))
    except NoSupervisor as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_NO_SUPERVISOR
    except CtlError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return EXIT_OK
