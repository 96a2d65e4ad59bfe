"""``python -m supervisor``: serve, check, topology.

The CLI is the only code that installs signal handlers, configures
structlog, picks the event loop and exits. Usage errors are one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn

import anyio

from .config import Config, ConfigError

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
    s.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop", "trio"],
        default="auto",
        help="event loop (default: uvloop when installed)",
    )
    c = sub.add_parser("check", help="validate a config and print the plan")
    c.add_argument("config")
    c.add_argument("--json", action="store_true")
    sub.add_parser("topology", help="print this machine's CPUs and places", add_help=False)
    sub.add_parser("ctl", help="talk to a running serve over its control socket", add_help=False)
    return p


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

        return run_check(args.config, as_json=args.json, out=sys.stdout, err=sys.stderr)
    return serve(args.config, loop=args.loop)


def _load(path: str) -> Config:
    from .config import load_config

    return load_config(path)


def serve(path: str, *, loop: str = "auto") -> int:
    """Load, plan (nothing starts on a bad config), then run until done or stopped."""
    from topology import TopologyError

    from .guard import RUN_ID_ENV, new_run_id

    run_id = new_run_id()  # marks every replica's descendants for the guard
    try:
        config = _load(path)
        from .numaprobe import NumactlProbe
        from .plan import build_plan

        environ = {**os.environ, RUN_ID_ENV: run_id}
        plan = build_plan(config, environ=environ, probe=NumactlProbe())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except TopologyError as exc:
        print(f"{path}: topology: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from . import logs
    from .output import use_color

    color = use_color(config.supervisor.color, sys.stderr, dict(os.environ))
    log = logs.configure(log_format=config.supervisor.log_format, color=color)
    for warning in plan.warnings:
        log.warning("plan_warning", message=warning)
    try:
        backend, options = _backend(loop)
    except ImportError:
        print(f"{PROG} serve: --loop uvloop: uvloop is not installed", file=sys.stderr)
        return EXIT_USAGE
    try:
        status: int = anyio.run(
            _serve, config, plan, log, run_id, backend=backend, backend_options=options
        )
    except OSError as exc:
        # The loop itself could not run (an fd limit far too low, say): one line.
        print(f"{path}: cannot supervise: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return status


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


async def _serve(config: Config, plan: object, log: object, run_id: str) -> int:
    from .engine import Supervisor
    from .plan import LaunchPlan
    from .reaper import Reaper
    from .signals import SignalPipe

    assert isinstance(plan, LaunchPlan)
    sup = Supervisor(config, plan=plan, logger=log)
    async with Reaper(sup, run_id=run_id) as reaper, anyio.create_task_group() as tg:
        with SignalPipe([signal.SIGTERM, signal.SIGINT]) as signals:

            async def on_signals() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    sup.request_stop(force=count > 1)
                    if count > 1:
                        log.warning(  # type: ignore[attr-defined]
                            "shutdown_forced", signal=signal.Signals(signum).name
                        )

            tg.start_soon(on_signals)
            tg.start_soon(reaper.run)
            async with sup:
                status = await sup.wait()
            await reaper.finish()
            tg.cancel_scope.cancel()
    return status
