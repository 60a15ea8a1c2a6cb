"""The operator commands (actions, approvals, approve, reject, pause, resume): against
the daemon's state store, found through its config, or a running daemon's API (--url)."""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from remediator.ops import backends, locate, views
from remediator.ops.backends import Operator


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


async def actions(args: argparse.Namespace) -> int:
    async def go(op: Operator) -> int:
        entries = await op.actions(args.limit)
        if args.json:
            _emit_json(entries)
        else:
            print(views.actions(entries))
        return 0

    return await _operate(args, go)


async def approvals(args: argparse.Namespace) -> int:
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


async def decide(args: argparse.Namespace, decision: str) -> int:
    async def go(op: Operator) -> int:
        done = await op.decide(args.action_id, decision, _who())
        print(f"approval {done.id} ({done.step} of run {done.run_id}) {decision} by {done.by}")
        return 0

    return await _operate(args, go)


async def switch(args: argparse.Namespace, paused: bool) -> int:
    async def go(op: Operator) -> int:
        await op.set_paused(paused, _who())
        print(
            f"paused ({op.where}): no mutations until `{_typed_command(args, 'resume')}`"
            if paused
            else f"resumed ({op.where})"
        )
        return 0

    return await _operate(args, go)
