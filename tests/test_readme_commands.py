"""The README's command table names every command and every option `--help` has.

A new user reads the table, not the parser: an option missing there (replay's
`--config`, the operator commands' `--url`) is one they never learn of.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from remediator.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# `WHERE` in the table: how an operator command finds the daemon's state.
WHERE = {"--config", "--url", "--token-file"}


def table() -> dict[str, str]:
    """command -> the usage cell(s) naming it."""
    start = README.index("## Command line\n")
    section = README[start : README.index("\n## ", start + 1)]
    rows: dict[str, str] = {}
    for cell in re.findall(r"^\| (`remediator [^|]+) \|", section, re.M):
        for usage in re.findall(r"`([^`]+)`", cell):
            name = usage.removeprefix("remediator ").split()[0]
            rows[name] = rows.get(name, "") + " " + usage
    return rows


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_and_option_is_in_the_table() -> None:
    rows = table()
    commands = subcommands()
    assert set(rows) == set(commands), set(rows) ^ set(commands)
    for name, parser in commands.items():
        usage = rows[name]
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - {
            "--help"
        }
        if "[WHERE]" in usage:
            assert flags >= WHERE, name
            flags -= WHERE
        missing = {f for f in flags if f not in usage.split() and f"[{f}" not in usage}
        assert not missing, f"{name}: {sorted(missing)} not in the README's table"
    assert "`WHERE` above is `--config FILE`, or `--url URL [--token-file FILE]`" in README
