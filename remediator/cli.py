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
import getpass
import json
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson

from remediator import __version__, logs
from remediator import settings as settings_mod
from remediator.errors import ConfigError, RemediatorError, StateUnavailable
from remediator.ops import backends, locate, views
from remediator.ops.backends import Operator

log = logs.get("remediator.cli")


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    return settings_mod.load(getattr(args, "config", None))


def _rules_valid_at_start(settings: settings_mod.Settings) -> bool:
    """Invalid rules at start are fatal: a daemon with none would answer 202 and do
    nothing. (A reload with invalid rules keeps the old ones: see Daemon.reload_rules.)"""
    from remediator.engine import rules
    from remediator.runbook_api.registry import load_entry_points

    _ruleset, errors = rules.load(settings.rules, load_entry_points())
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"serve: {len(errors)} error(s) in the rules; not starting", file=sys.stderr)
    return not errors


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from remediator.daemon import Daemon, freeze_startup_heap
    from remediator.server.app import create_app

    settings = _settings(args)
    if not _rules_valid_at_start(settings):
        return 2
    if not settings.auth.webhook_tokens:
        log.warning(
            "no_webhook_tokens",
            detail="webhook accepts unauthenticated requests",
            listen=settings.listen,
        )
    daemon = Daemon(settings)
    await daemon.start()
    # keepalive_timeout also bounds how long a new connection may take to send its
    # first request's headers (aiohttp has no separate header timeout), so a slow
    # client cannot hold a connection open; lingering_time bounds reading the rest of
    # a body after an early answer. The webhook bounds its own body read.
    read_timeout = settings.limits.read_timeout
    runner = web.AppRunner(
        create_app(daemon),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=10,
        keepalive_timeout=read_timeout,
        lingering_time=read_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    frozen = freeze_startup_heap()
    from remediator.doctor import startup as doctor_startup

    # After the freeze: the preflight's short-lived clients must stay collectable.
    preflight = doctor_startup.spawn(settings, daemon.registry)  # logs; never blocks start
    log.info(
        "serving",
        listen=settings.listen,
        mode=settings.mode,
        state=settings.state.get_secret_value().split("://")[0],
        version=__version__,
        rules=len(daemon.ruleset or ()),
        owner=daemon.owner,
        gc_frozen_objects=frozen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload_rules)
    await stop.wait()
    log.info("stopping", detail="no new connections; finishing in-flight requests")
    # Stop accepting, let in-flight webhooks finish (they are journaled or 503),
    # then drain the journal and stop the loops; unfinished runs keep their lease
    # and are resumed by this or another replica.
    preflight.cancel()
    await runner.cleanup()
    await daemon.stop()
    log.info("stopped")
    return 0


def _prometheus_configured(args: argparse.Namespace) -> bool:
    """Whether the config names targets.prometheus (a config that cannot be read
    says nothing: check-rules of a bare rules file must not fail on it)."""
    try:
        return _settings(args).targets.prometheus is not None
    except Exception:
        return True


def _check_rules(args: argparse.Namespace) -> int:
    from remediator.engine import rules
    from remediator.engine.verify import warnings as verify_warnings
    from remediator.runbook_api.registry import load_entry_points

    path = args.path or _settings(args).rules
    registry = load_entry_points()
    ruleset, errors = rules.load(path, registry)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"FAILED: {len(errors)} error(s)", file=sys.stderr)
        return 1
    assert ruleset is not None
    # Valid rules a runbook still finds unsafe or inert as they stand (RB-06 with an
    # empty allow_list). They do not fail the check: the shipped rules carry one until
    # a user fills in their own networks, and CI must not break on that.
    warned = 0
    # Only with a config: without one, nothing says whether Grafana can corroborate.
    no_grafana = getattr(args, "config", None) is not None and (
        _settings(args).targets.grafana is None
    )
    for rule in ruleset.rules:
        runbook = registry.get(rule.runbook)
        warnings = list(runbook.warnings(rule.params)) if runbook is not None else []
        if no_grafana:
            from remediator.engine.sources import GRAFANA_UNCORROBORATED

            warnings.append(GRAFANA_UNCORROBORATED)
        for warning in warnings:
            print(f"{rule.source}: rule {rule.name!r}: warning: {warning}", file=sys.stderr)
            warned += 1
    for warning in verify_warnings(ruleset, _prometheus_configured(args)):
        print(warning, file=sys.stderr)
        warned += 1
    note = f" ({warned} warning(s), on stderr)" if warned else ""
    print(f"SUCCESS: {len(ruleset)} rules found in {', '.join(ruleset.sources)}{note}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from remediator.engine import replay, rules
    from remediator.models import WebhookPayload
    from remediator.ops.errors import validation_lines
    from remediator.runbook_api.registry import load_entry_points

    settings = _settings(args)
    registry = load_entry_points()
    ruleset, errors = rules.load(args.rules or settings.rules, registry)
    if ruleset is None:
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    name = "<stdin>" if args.payload == "-" else args.payload
    try:
        if args.payload == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.payload, "rb") as f:
                raw = f.read()
        payload = WebhookPayload.model_validate_json(raw)
    except OSError as exc:
        print(f"{name}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"{name}: not an Alertmanager v4 payload:", file=sys.stderr)
        for line in validation_lines(exc):
            print(f"  {line}", file=sys.stderr)
        return 1
    entries = replay.plan(payload, ruleset, registry, settings)
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
    else:
        print(replay.format_timeline(entries))
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    from remediator import doctor
    from remediator.runbook_api.registry import load_entry_points

    report = await doctor.run(_settings(args), load_entry_points(), test_page=args.test_page)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        print(doctor.format_text(report))
    return 0 if report.ok else 1


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def _operate(args: argparse.Namespace, fn: Callable[[Operator], Awaitable[int]]) -> int:
    """Run ``fn`` against the daemon's state, found as the README says (ops/locate.py)."""
    place = locate.locate(
        config=args.config,
        url=args.url,
        token_file=args.token_file,
        env=os.environ,
        cwd=Path.cwd(),
    )
    op = await backends.connect(place)
    try:
        return await fn(op)
    finally:
        await op.close()


def _emit_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, default=str).decode() + "\n")


async def _actions(args: argparse.Namespace) -> int:
    async def go(op: Operator) -> int:
        entries = await op.actions(args.limit)
        if args.json:
            _emit_json(entries)
        else:
            print(views.actions(entries))
        return 0

    return await _operate(args, go)


async def _approvals(args: argparse.Namespace) -> int:
    async def go(op: Operator) -> int:
        pending = await op.approvals()
        if args.json:
            _emit_json(pending)
        else:
            print(views.approvals(pending, _typed_command(args, "approve {id}")))
        return 0

    return await _operate(args, go)


def _typed_command(args: argparse.Namespace, verb: str) -> str:
    """The command as this user would type it again, from anywhere."""
    if args.url:
        command = f"remediator {verb} --url {args.url}"
        if args.token_file:
            command += f" --token-file {shlex.quote(os.path.abspath(args.token_file))}"
        return command
    config = args.config or os.environ.get("REMEDIATOR_CONFIG")
    if config:
        return f"remediator {verb} --config {shlex.quote(os.path.abspath(config))}"
    return f"remediator {verb}"


async def _decide(args: argparse.Namespace, decision: str) -> int:
    async def go(op: Operator) -> int:
        done = await op.decide(args.action_id, decision, _who())
        print(f"approval {done.id} ({done.step} of run {done.run_id}) {decision} by {done.by}")
        return 0

    return await _operate(args, go)


async def _switch(args: argparse.Namespace, paused: bool) -> int:
    async def go(op: Operator) -> int:
        await op.set_paused(paused, _who())
        print(
            f"paused ({op.where}): no mutations until `{_typed_command(args, 'resume')}`"
            if paused
            else f"resumed ({op.where})"
        )
        return 0

    return await _operate(args, go)


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} must be 1 or more")
    return value


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
    sp = cmd("check-rules", "validate rule files")
    sp.add_argument("path", nargs="?")
    sp = cmd("replay", "plan a webhook payload in dry-run and print the timeline")
    sp.add_argument("payload", help="Alertmanager webhook JSON file, or - for stdin")
    sp.add_argument("--rules", help="rules file or directory (default: from config)")
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
        sp.add_argument("action_id", type=int)
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
            return _run(_serve(args))
        if args.command == "check-rules":
            return _check_rules(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "actions":
            return asyncio.run(_actions(args))
        if args.command == "approvals":
            return asyncio.run(_approvals(args))
        if args.command in ("approve", "reject"):
            return asyncio.run(
                _decide(args, "approved" if args.command == "approve" else "rejected")
            )
        if args.command == "doctor":
            return asyncio.run(_doctor(args))
        if args.command in ("pause", "resume"):
            return asyncio.run(_switch(args, args.command == "pause"))
        if args.command == "backtest":
            from remediator.backtest import command as backtest

            return asyncio.run(backtest.run(args, _settings(args)))
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


if __name__ == "__main__":
    raise SystemExit(main())
