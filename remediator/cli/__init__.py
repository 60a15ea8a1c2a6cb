"""remediator: runs DawsOS runbooks for Alertmanager alerts (see README.md).

serve | check-rules | replay | actions | approvals | approve | reject | pause | resume |
backtest | doctor
Operator commands find the daemon's state store through its config (--config or
$REMEDIATOR_CONFIG), so they work whether or not a daemon is running and every
replica sees the result; or they talk to a running daemon's API (--url).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from remediator import __version__, logs
from remediator.cli.common import load_settings
from remediator.cli.doctor_command import run_doctor
from remediator.cli.operator import actions, approvals, decide, switch
from remediator.cli.rules import check_rules, replay_payload
from remediator.cli.serve import serve
from remediator.errors import ConfigError, RemediatorError, StateUnavailable
from remediator.ops import backends


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} must be 1 or more")
    return value


def _approval_id(raw: str) -> int:
    # As the operator API takes it (1 to 18 ASCII digits, always a 64-bit integer):
    # a longer number would reach the state store and fail there, with a traceback.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or int(raw) < 1:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not an approval id (a whole number, 1 to 18 digits)"
        )
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remediator", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"remediator {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(
        name: str, help_: str, config_help: str = "$REMEDIATOR_CONFIG or built-in"
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", help=f"config file (default: {config_help})")
        return sp

    cmd("serve", "run the daemon")
    sp = cmd("check-rules", "validate rule files and YAML runbooks")
    sp.add_argument("path", nargs="?")
    sp.add_argument("--runbooks", help="YAML runbooks file or directory (default: from config)")
    sp = cmd("replay", "plan a webhook payload in dry-run and print the timeline")
    sp.add_argument("payload", help="Alertmanager webhook JSON file, or - for stdin")
    sp.add_argument("--rules", help="rules file or directory (default: from config)")
    sp.add_argument("--runbooks", help="YAML runbooks file or directory (default: from config)")
    sp.add_argument("--json", action="store_true")

    def operator_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        sp = cmd(name, help_, "$REMEDIATOR_CONFIG, else ./remediator-state.db if it exists")
        sp.add_argument("--url", help="a running daemon's API instead of its state store")
        sp.add_argument("--token-file", help="file holding an operator token (with --url)")
        return sp

    sp = operator_cmd("actions", "the audit trail, newest first")
    sp.add_argument("--limit", type=_positive, default=50, help="entries to show (1 or more)")
    sp.add_argument("--json", action="store_true")
    sp = operator_cmd("approvals", "the pending approvals")
    sp.add_argument("--json", action="store_true")
    for name in ("approve", "reject"):
        sp = operator_cmd(name, f"{name} a pending step")
        sp.add_argument("action_id", type=_approval_id)
    sp = cmd("doctor", "check the configured targets, pagers, routing and runbook steps")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--test-page", action="store_true", help="send one P3 test page")
    operator_cmd("pause", "kill switch on: nothing mutates")
    operator_cmd("resume", "kill switch off")
    from remediator.backtest import command as backtest

    backtest.add_arguments(cmd("backtest", "replay Prometheus's alert history through the rules"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure()
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # `remediator actions | head -1`: the reader left. Point stdout at devnull so
        # the interpreter's final flush does not raise again, and exit as a pipe does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "serve":
            return _run(serve(args))
        if args.command == "check-rules":
            return check_rules(args)
        if args.command == "replay":
            return replay_payload(args)
        if args.command == "actions":
            return asyncio.run(actions(args))
        if args.command == "approvals":
            return asyncio.run(approvals(args))
        if args.command in ("approve", "reject"):
            return asyncio.run(
                decide(args, "approved" if args.command == "approve" else "rejected")
            )
        if args.command == "doctor":
            return asyncio.run(run_doctor(args))
        if args.command in ("pause", "resume"):
            return asyncio.run(switch(args, args.command == "pause"))
        if args.command == "backtest":
            from remediator.backtest import command as backtest

            return asyncio.run(backtest.run(args, load_settings(args)))
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 2
    except backends.OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StateUnavailable as exc:
        print(f"state store unavailable: {exc}", file=sys.stderr)
        return 3
    except RemediatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result
