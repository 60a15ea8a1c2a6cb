"""The README's "Your first live mitigation" runs as written.

The section's fenced ``sh`` blocks are taken from README.md and run in order, in one
bash, exactly as a reader pastes them. Only the values of the ``export`` lines the
section itself declares for the database server, the database name and the listen
address are replaced (a database of this test's own, a free port). They run in a
scratch copy of the files the section uses (``deploy/dawsos/``, ``rules/``), with
``.venv`` pointing at this interpreter's environment and this checkout first on the
import path. Then the target rows must show the mitigation and its undo.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support import root_conftest

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Your first live mitigation (5 minutes)"
# The variables the section declares for where things are; nothing else is changed.
SUBSTITUTED = ("PGHOST", "PGPORT", "PGUSER", "DAWSOS_DB", "REMEDIATOR_LISTEN")
OFFENDERS = ("abc-123", "ghi-789")  # storm.sql: above RB-03's 50 notifications
COOLDOWNS = {  # seed.sql: each alert's own cooldown, put back on resolve
    "abc-123": 5,
    "def-456": 15,
    "ghi-789": 30,
    "pgn-101": 15,
    "pgn-102": 60,
    "fmp-201": 120,
    "frd-301": 60,
    "sys-rights-violation": 0,
    "sys-security-incident": 0,
}


def section(readme: str) -> str:
    start = readme.index(HEADING)
    end = readme.find("\n## ", start + len(HEADING))
    return readme[start : end if end != -1 else None]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def substitute(script: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        pattern = re.compile(rf"^export {name}=.*$", re.M)
        assert len(pattern.findall(script)) == 1, f"the section must declare {name} once"
        script = pattern.sub(f"export {name}={value}", script)
    return script


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the section uses, where the section expects them."""
    work = tmp_path / "remediator"
    # A state store or log left by someone trying the section here is not copied.
    leftovers = shutil.ignore_patterns("remediator-state.db*", "*.log")
    shutil.copytree(ROOT / "deploy" / "dawsos", work / "deploy" / "dawsos", ignore=leftovers)
    shutil.copytree(ROOT / "rules", work / "rules")
    (work / ".venv").symlink_to(Path(sys.prefix))
    assert (work / ".venv" / "bin" / "remediator").exists(), "no remediator script"
    return work


@pytest.fixture
async def database(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database name for the section to create; dropped afterwards."""
    shared = root_conftest(request.config)
    name = f"firstday_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(shared.PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        shared.service_missing("PostgreSQL", exc)
        raise
    await conn.close()
    yield name
    conn = await asyncpg.connect(shared.PG_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_the_section_declares_what_it_needs() -> None:
    text = section((ROOT / "README.md").read_text())
    blocks = shell_blocks(text)
    assert blocks, "no sh block in the section"
    script = "\n".join(blocks)
    for name in SUBSTITUTED:
        assert re.search(rf"^export {name}=", script, re.M), name
    assert ".venv/bin/remediator serve --config deploy/dawsos/remediator.yaml" in script
    assert "deploy/dawsos/schema.sql" in script and "deploy/dawsos/seed.sql" in script


async def test_the_readme_section_mitigates_and_undoes_on_a_local_postgres(
    request: pytest.FixtureRequest, checkout: Path, database: str, unused_port: int
) -> None:
    shared = root_conftest(request.config)
    server = urlsplit(shared.PG_DSN)
    script = substitute(
        "\n".join(shell_blocks(section((ROOT / "README.md").read_text()))),
        {
            "PGHOST": server.hostname or "127.0.0.1",
            "PGPORT": str(server.port or 5432),
            "PGUSER": server.username or "postgres",
            "DAWSOS_DB": database,
            "REMEDIATOR_LISTEN": f"127.0.0.1:{unused_port}",
        },
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("REMEDIATOR_CONFIG", "DAWSOS_DSN", "PGDATABASE", "PGSERVICE"):
        env.pop(name, None)
    if server.password:
        env["PGPASSWORD"] = server.password
    proc = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the daemon it starts is in our group: ended below
    )
    try:
        output, _ = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        output += "\n(the section did not finish in 100 s)"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the daemon, if the section stopped early
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    log = (
        (checkout / "remediator.log").read_text() if (checkout / "remediator.log").exists() else ""
    )
    assert proc.returncode == 0, f"{output}\n--- remediator.log\n{log}"

    dsn = shared.PG_DSN.rsplit("/", 1)[0] + f"/{database}"
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM alerts")}
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'alerts'"
            )
        }
    finally:
        await conn.close()
    # The runbook-named columns only: no build status, no hash, no owner.
    assert columns == {"id", "name", "condition_json", "active", "cooldown_minutes"}
    # The mitigation that stays: the two offenders above the threshold are disabled,
    # nothing else.
    assert {i for i, r in rows.items() if not r["active"]} == set(OFFENDERS), f"{output}\n{log}"
    # The temporary one was applied (the actions view says so) and undone on resolve.
    assert {i: r["cooldown_minutes"] for i, r in rows.items()} == COOLDOWNS
    for step in ("global_cooldown", "disable_offenders", "confirm_storm"):
        assert re.search(rf"RB-03\s+fire\s+{step}\s+applied", output), output
    assert "not configured: targets.kubernetes" in output
    # What the reader saw while the storm was braked: the cooldowns at 60.
    braked = re.search(r"^ def-456 +\| Portfolio Loss +\| t +\| +60$", output, re.M)
    assert braked, output
