"""The import layers (.importlinter) hold, and each contract fails on the violation it names.

Each case copies the package, adds one import that breaks a rule the README's "Layout"
states, and runs ``lint-imports`` on the copy: a contract that could not fail would
prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "remediator", tree / "remediator", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(ROOT / ".importlinter", tree / ".importlinter")
    return tree


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    proc = _lint(_copy(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # the engine reaching for a driver instead of a client
        ("engine/rules.py", "import httpx", "Only clients and state import"),
        # paging posting with httpx itself (clients/http_post.py is the way)
        ("paging/pagerduty.py", "import httpx", "Only clients and state import"),
        # a client that knows the engine (the factory lives in the daemon)
        ("clients/cache.py", "import remediator.runbook_api.context", "Clients import nothing"),
        # a runbook taking its validators from the AWS client: boto3 comes along
        ("runbooks/rb05_database_incident.py", "import remediator.clients.aws", "load no cloud"),
        # the state store calling up into the engine
        ("state/journal.py", "import remediator.engine.rules", "Entry points, then engine"),
        # the runbook API depending on the runbooks written against it
        ("runbook_api/steps.py", "import remediator.runbooks.plan", "Entry points, then engine"),
        # the outbox typed with the whole store instead of its page-queue Protocol
        ("paging/outbox.py", "import remediator.state.store", "page-queue Protocol"),
    ],
)
def test_a_contract_fails_on_the_violation_it_names(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    target = tree / "remediator" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", "utf-8")
    proc = _lint(tree)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    broken = proc.stdout[proc.stdout.index("Broken contracts") :]
    assert contract in broken
