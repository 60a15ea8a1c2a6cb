"""Plumbing for the doctor tests: a config file, and ``remediator doctor`` as a user
runs it (a child process), with its exit code, output and parsed ``--json``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "rules"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def write_config(tmp_path: Path, config: dict[str, Any], rules: str | None = None) -> Path:
    """A config file; ``rules``: the YAML of a rules file (default: the shipped rules)."""
    if rules is not None:
        path = tmp_path / "rules.yaml"
        path.write_text(rules)
        config = {"rules": str(path), **config}
    else:
        config = {"rules": str(SHIPPED_RULES), **config}
    config = {"state": f"sqlite:///{tmp_path}/state.db", **config}
    file = tmp_path / "remediator.yaml"
    file.write_text(yaml.safe_dump(config))
    return file


async def doctor(config: Path, *args: str, env: dict[str, str] | None = None) -> Outcome:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        "doctor",
        "--config",
        str(config),
        *args,
        cwd=config.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


def step(report: dict[str, Any], runbook: str, name: str) -> dict[str, Any]:
    for rb in report["runbooks"]:
        if rb["runbook"] == runbook:
            for s in rb["steps"]:
                if s["step"] == name:
                    return dict(s)
    raise AssertionError(f"{runbook} {name} not in the report")


def check(report: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for c in report[section]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"{name} not in {section}")
