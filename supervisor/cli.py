"""``python -m supervisor``: serve, check, topology.

The CLI is the only code that installs signal handlers, configures
structlog, picks the event loop and exits. Usage errors are one line, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from .config import Config

# The rest (anyio, the config model, the engine) is imported where it is used,
# so `ctl` and `topology`, dispatched from here, start without it.

EXIT_USAGE = 2
PROG = "python -m supervisor"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="A placement-aware process supervisor.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("serve", help="start every group and supervise it")
    s.add_argument("config")
    _launcher_args(s)
    s.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop", "trio"],
        default="auto",
        help="event loop (default: uvloop when installed)",
    )
    c = sub.add_parser("check", help="validate a config and print the plan")
    c.add_argument("config")
    c.add_argument("--json", action="store_true")
    _launcher_args(c)
    sub.add_parser("topology", help="print this machine's CPUs and places", add_help=False)
    sub.add_parser("ctl", help="talk to a running serve over its control socket", add_help=False)
    return p


def _launcher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node-rank", type=int, default=None, metavar="K", help="this node's rank in the job"
    )
    p.add_argument("--nodes", type=int, default=None, metavar="N", help="nodes in the job")


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0] == "topology":
        from topology.cli import main as topology_main

        return topology_main(args_list[1:], prog=f"{PROG} topology")
    if args_list and args_list[0] == "ctl":
        from .control.ctl import main as ctl_main

        return ctl_main(args_list[1:], prog=f"{PROG} ctl")
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "check":
        from .check import run_check

        return run_check(
            args.config,
            as_json=args.json,
            out=sys.stdout,
            err=sys.stderr,
            node_rank=args.node_rank,
            nodes=args.nodes,
        )
    return serve(args.config, loop=args.loop, node_rank=args.node_rank, nodes=args.nodes)


def _load(path: str) -> Config:
    from .config import load_config

    return load_config(path)


def serve(
    path: str, *, loop: str = "auto", node_rank: int | None = None, nodes: int | None = None
) -> int:
    """Load, plan, bind (nothing starts on a bad config), then run until done or stopped."""
    import anyio

    from topology import TopologyError

    from .config import ConfigError
    from .errors import SupervisorError
    from .guard import RUN_ID_ENV, new_run_id
    from .sockets import SocketSet

    run_id = new_run_id()  # marks every replica's descendants for the guard
    sockets = SocketSet()
    try:
        config = _load(path)
        from .numaprobe import NumactlProbe
        from .plan import build_plan, fd_problem

        environ = {**os.environ, RUN_ID_ENV: run_id}
        plan = build_plan(
            config, environ=environ, probe=NumactlProbe(), node_rank=node_rank, nodes=nodes
        )
        child_nofile = _raise_nofile()
        problem = fd_problem(config, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        if problem:
            raise config.error("group", problem)
        sockets.open(config)
    except ConfigError as exc:
        sockets.close()
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except TopologyError as exc:
        print(f"{path}: topology: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from . import logs
    from .output import StreamSink, use_color

    color = use_color(config.supervisor.color, sys.stderr, dict(os.environ))
    logged: list[Any] = []

    def closed(stream: str, why: str) -> None:  # in the writer thread; logging is queued
        for log in logged:
            log.warning(
                "output_closed",
                stream=stream,
                reason=f"{why}; replica output to {stream} is dropped from now on, "
                "the replicas keep running",
            )

    sink = StreamSink(sys.stdout, sys.stderr, on_closed=closed)
    log = logs.configure(
        log_format=config.supervisor.log_format, color=color, stream=sink.log_stream()
    )
    logged.append(log)
    for warning in plan.warnings:
        log.warning("plan_warning", message=warning)
    try:
        backend, options = _backend(loop)
    except ImportError:
        print(f"{PROG} serve: --loop uvloop: uvloop is not installed", file=sys.stderr)
        return EXIT_USAGE
    run = _Run(config, plan, log, run_id, sink, sockets, environ, child_nofile, node_rank, nodes)
    try:
        status: int = anyio.run(run.main, backend=backend, backend_options=options)
    except OSError as exc:
        # The loop itself could not run (an fd limit far too low, say): one line.
        print(f"{path}: cannot supervise: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except SupervisorError as exc:  # the control socket is served by another supervisor
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    finally:
        sockets.close()
    # Bounded: a stalled reader of our output has had its time (the stop abandoned it).
    sink.flush(1.0)
    return status


def _raise_nofile() -> tuple[int, int] | None:
    """Raise the soft fd limit to the hard one (as systemd does); the original for replicas."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or (hard != resource.RLIM_INFINITY and soft > hard):
        return None
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return None
    return soft, hard


def _backend(loop: str) -> tuple[str, dict[str, object]]:
    if loop == "trio":
        return "trio", {}
    if loop in ("auto", "uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            return "asyncio", {"use_uvloop": True}
    return "asyncio", {}


class _Run:
    """``serve``'s async part: signals, guard, control socket, systemd notifications."""

    def __init__(
        self,
        config: Config,
        plan: object,
        log: Any,
        run_id: str,
        sink: object,
        sockets: object,
        environ: dict[str, str],
        child_nofile: tuple[int, int] | None,
        node_rank: int | None,
        nodes: int | None,
    ) -> None:
        self.config, self.plan, self.log, self.run_id = config, plan, log, run_id
        self.sink, self.sockets, self.environ = sink, sockets, environ
        self.child_nofile, self.node_rank, self.nodes = child_nofile, node_rank, nodes

    async def main(self) -> int:
        import anyio

        from .engine import Supervisor
        from .output import StreamSink
        from .plan import LaunchPlan
        from .reaper import Reaper
        from .sdnotify import Notifier
        from .signals import SignalPipe
        from .sockets import SocketSet

        assert isinstance(self.plan, LaunchPlan)
        assert isinstance(self.sink, StreamSink) and isinstance(self.sockets, SocketSet)
        log = self.log
        sup = Supervisor(
            self.config,
            plan=self.plan,
            logger=log,
            environ=self.environ,
            output=self.sink,
            sockets=self.sockets,
            child_nofile=self.child_nofile,
            node_rank=self.node_rank,
            nodes=self.nodes,
        )
        notifier = Notifier(os.environ)
        signums = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
        async with contextlib.AsyncExitStack() as stack:
            # The control socket first: a live supervisor on it is one line, exit 2,
            # before anything else starts.
            await stack.enter_async_context(_control(sup, self.plan, self.config))
            reaper = await stack.enter_async_context(Reaper(sup, run_id=self.run_id))
            tg = await stack.enter_async_context(anyio.create_task_group())
            signals = stack.enter_context(SignalPipe(signums))

            async def on_signals() -> None:
                count = 0
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        tg.start_soon(self._reload, sup, notifier)
                        continue
                    count += 1
                    if count == 1:
                        notifier.send("STOPPING=1")
                    sup.request_stop(force=count > 1)
                    if count > 1:
                        log.warning("shutdown_forced", signal=signal.Signals(signum).name)

            tg.start_soon(on_signals)
            tg.start_soon(reaper.run)
            if notifier.enabled:
                tg.start_soon(self._report, sup, notifier)
            async with sup:
                status = await sup.wait()
            notifier.send("STOPPING=1")
            notifier.close()
            await reaper.finish()
            tg.cancel_scope.cancel()
        return status

    async def _reload(self, sup: Any, notifier: Any) -> None:
        """SIGHUP: read the file again; an invalid one changes nothing (reload_failed)."""
        import time

        from .errors import SupervisorError

        notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        with contextlib.suppress(SupervisorError):  # logged as reload_failed by the engine
            await sup.reload()
        notifier.send("READY=1")

    async def _report(self, sup: Any, notifier: Any) -> None:
        """READY=1 once every replica is ready, STATUS= on changes, WATCHDOG=1 on time."""
        import anyio

        async with anyio.create_task_group() as tg:
            if notifier.watchdog_interval > 0:

                async def watchdog() -> None:
                    while True:
                        notifier.send("WATCHDOG=1")
                        await anyio.sleep(notifier.watchdog_interval)

                tg.start_soon(watchdog)
            told_ready = False
            while True:
                replicas = sup.status(verify=False)  # on every change: no /proc reads
                ready = sum(1 for r in replicas if r.ready)
                notifier.status(f"{ready} of {len(replicas)} replicas ready")
                if not told_ready and sup.is_ready():
                    told_ready = True
                    notifier.send("READY=1")
                await sup.wait_changed()


def _control(sup: Any, plan: Any, config: Config) -> Any:
    """The control socket, when the config asks for one (and the module is there)."""
    path = getattr(plan, "control_socket", None)
    listen = config.control.listen or None
    if not path and not listen:
        return contextlib.nullcontext()
    from .control.server import serve_control

    return serve_control(sup, socket=path, listen=listen)
