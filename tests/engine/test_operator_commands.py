"""Operator commands as an on-call engineer uses them: pasted from a page, from another
directory, against the daemon's real state (SQLite and Postgres), or through its API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from remediator import settings as settings_mod
from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert
from tests.conftest import PG_DSN, service_missing
from tests.engine import _testbook

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "remediator", *argv],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def paste(command: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command exactly as a page printed it (``remediator ...``)."""
    argv = command.split()
    assert argv[0] == "remediator", command
    return run_cli(*argv[1:], cwd=cwd)


@pytest.fixture(params=["sqlite", "postgres"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The ``state:`` value of the config: a relative sqlite path, or a Postgres schema."""
    if request.param == "sqlite":
        yield "sqlite:///state.db"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
        raise
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    yield f"{PG_DSN}?search_path={schema}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


def write_config(directory: Path, state: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(_testbook.rules(cooldown="30m"))
    cfg = directory / "remediator.yaml"
    cfg.write_text(f"mode: live\nrules: rules.yaml\nstate: {state}\n")
    return cfg


def commands_in(item: str) -> list[str]:
    return re.findall(r"`(remediator [^`]+)`", item)


async def test_page_commands_paste_from_anywhere_and_actions_tell_the_whole_story(
    state: str, tmp_path: Path, clients: Clients
) -> None:
    cfg = write_config(tmp_path / "etc", state)
    settings = settings_mod.load(cfg, env={})
    if state.startswith("sqlite"):
        # Relative to the config file, not to where the command runs.
        assert settings.state.get_secret_value() == f"sqlite:///{tmp_path / 'etc' / 'state.db'}"
    assert settings.rules == str(tmp_path / "etc" / "rules.yaml")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()

    harness = Harness(
        _testbook.registry(),
        _testbook.rules(cooldown="30m"),
        clients=clients,
        state_url=settings.state.get_secret_value(),
    )
    harness.settings = settings
    async with harness as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        await h.deliver(make_alert("TestAlert", {"service": "billing"}))
        # Same target as the first, inside its cooldown: blocked before any step.
        await h.deliver(
            make_alert("TestAlert", {"service": "checkout"}, starts_at="2026-11-28T01:00:00Z")
        )
        pages = h.pager.triggers()
        [checkout_page, billing_page] = [
            p for p in pages if p.content.labels.get("service") in ("checkout", "billing")
        ][:2]
        [approve_checkout, _] = commands_in(checkout_page.content.left_for_human[0])
        [_, reject_billing] = commands_in(billing_page.content.left_for_human[0])
        assert approve_checkout.endswith(f"--config {cfg}"), approve_checkout

        listed = await asyncio.to_thread(run_cli, "approvals", "--config", str(cfg), cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == [
            "ID",
            "RUN",
            "RUNBOOK",
            "STEP",
            "EXPIRES",
            "(UTC)",
            "WHO",
            "MAY",
            "DECIDE",
        ]
        assert "would run: UPDATE knobs SET value = 0 WHERE name = 'replicas'" in listed.stdout
        assert "any local operator" in listed.stdout
        as_json = await asyncio.to_thread(
            run_cli, "approvals", "--json", cwd=elsewhere, env={"REMEDIATOR_CONFIG": str(cfg)}
        )
        pending = json.loads(as_json.stdout)
        assert sorted(a["step"] for a in pending) == ["scale_down", "scale_down"]
        assert all(a["expires_at"] > a["requested_at"] for a in pending)

        approved = await asyncio.to_thread(paste, approve_checkout, cwd=elsewhere)
        assert approved.returncode == 0, approved.stderr
        assert "approved by cli:" in approved.stdout
        rejected = await asyncio.to_thread(paste, reject_billing, cwd=elsewhere)
        assert rejected.returncode == 0, rejected.stderr
        missing = await asyncio.to_thread(
            run_cli, "approve", "999", "--config", str(cfg), cwd=elsewhere
        )
        assert missing.returncode == 1
        assert "no approval 999 in state store" in missing.stderr
        if state.startswith("sqlite"):
            assert str(tmp_path / "etc" / "state.db") in missing.stderr

        actions = await asyncio.to_thread(run_cli, "actions", "--config", str(cfg), cwd=elsewhere)
    assert actions.returncode == 0, actions.stderr
    out = actions.stdout.splitlines()
    assert out[0].split() == [
        "WHEN",
        "(UTC)",
        "RUN",
        "RUNBOOK",
        "PHASE",
        "STEP",
        "STATUS",
        "DETAIL",
    ]
    text = actions.stdout
    assert re.search(r"scale_down\s+approved by cli:\S+", text), text
    assert re.search(r"scale_down\s+rejected by cli:\S+", text), text
    assert "awaiting approval" not in text
    # Once decided, a fire row no longer offers the approve command (it would be refused).
    assert "approve with" not in text
    assert re.search(r"rejected by cli:\S+\s+approval \d+ rejected: not run", text), text
    assert re.search(r"\(whole run\)\s+blocked by cooldown\s+cooldown engaged \(cooldown", text), (
        text
    )
    assert "throttle 0 -> 1" in text  # the detail column
    assert not (elsewhere / "remediator-state.db").exists()


async def test_no_config_refuses_instead_of_creating_an_empty_store(tmp_path: Path) -> None:
    r = await asyncio.to_thread(run_cli, "actions", cwd=tmp_path)
    assert r.returncode == 2
    assert "--config" in r.stderr and "--url" in r.stderr
    assert not (tmp_path / "remediator-state.db").exists()

    cfg = tmp_path / "etc" / "remediator.yaml"
    cfg.parent.mkdir()
    cfg.write_text("state: sqlite:///nothing-here.db\n")
    r = await asyncio.to_thread(run_cli, "approve", "1", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2
    assert str(tmp_path / "etc" / "nothing-here.db") in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / "etc" / "nothing-here.db").exists()


@pytest.mark.parametrize("limit", ["0", "-3", "ten"])
async def test_actions_limit_must_be_a_positive_integer(tmp_path: Path, limit: str) -> None:
    r = await asyncio.to_thread(run_cli, "actions", "--limit", limit, cwd=tmp_path)
    assert r.returncode == 2
    assert "--limit" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", [["actions"], ["approvals"], ["approve", "1"], ["pause"]])
async def test_a_postgres_no_daemon_has_used_is_refused_and_left_empty(
    tmp_path: Path, pg_schema_dsn: str, command: list[str]
) -> None:
    """The Postgres counterpart of a missing SQLite file: opening the store would
    create its tables, and `pause` would set a kill switch no daemon reads."""
    cfg = write_config(tmp_path, pg_schema_dsn)
    r = await asyncio.to_thread(run_cli, *command, "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    schema = pg_schema_dsn.rsplit("search_path=", 1)[1]
    assert f"?search_path={schema} holds no remediator state" in r.stderr, r.stderr
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
        )
    finally:
        await conn.close()
    assert tables == 0


@pytest.mark.parametrize("action_id", ["0", "99999999999999999999999", "\uff11", "7x"])
@pytest.mark.parametrize("verb", ["approve", "reject"])
async def test_an_approval_id_out_of_range_is_refused_before_the_store(
    tmp_path: Path, verb: str, action_id: str
) -> None:
    cfg = write_config(tmp_path, "sqlite:///state.db")
    (tmp_path / "state.db").touch()
    r = await asyncio.to_thread(run_cli, verb, action_id, "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "is not an approval id (a whole number, 1 to 18 digits)" in r.stderr
    assert "Traceback" not in r.stderr


async def test_actions_survives_a_closed_pipe(tmp_path: Path, clients: Clients) -> None:
    cfg = write_config(tmp_path, "sqlite:///state.db")
    settings = settings_mod.load(cfg, env={})
    harness = Harness(
        _testbook.registry(), _testbook.rules(), clients=clients,
        state_url=settings.state.get_secret_value(),
    )  # fmt: skip
    async with harness as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
    shell = await asyncio.to_thread(
        subprocess.run,
        f"{sys.executable} -m remediator actions --config {cfg} | head -1",
        shell=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.stdout.startswith("WHEN (UTC)")
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr
    # The reader gone before the first write: always a broken pipe.
    proc = subprocess.Popen(
        [sys.executable, "-m", "remediator", "actions", "--config", str(cfg)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = await asyncio.to_thread(proc.stderr.read)
    proc.stderr.close()
    assert await asyncio.to_thread(proc.wait, 60) == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err


async def test_without_a_config_the_zero_config_store_here_is_used(
    tmp_path: Path, clients: Clients
) -> None:
    harness = Harness(
        _testbook.registry(), _testbook.rules(), clients=clients,
        state_url=f"sqlite:///{tmp_path}/remediator-state.db",
    )  # fmt: skip
    async with harness as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
    r = await asyncio.to_thread(run_cli, "approvals", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [pending] = json.loads(r.stdout)
    assert pending["step"] == "scale_down"
    shown = await asyncio.to_thread(run_cli, "approvals", cwd=tmp_path)
    # Typed from here, the command needs no flag: this directory's store is the one.
    assert f"decide: remediator approve {pending['id']}\n" in shown.stdout


def test_who_may_decide_names_the_operator_tokens_and_slack_approvers() -> None:
    from remediator.ops.backends import who_may_decide

    settings = settings_mod.from_mapping(
        {
            "auth": {"operator_tokens": {"carol": "carol-operator-token-0123"}},
            "approvals": {
                "slack": {
                    "signing_secret": "8f742231b10e8888abcd99yyyzzz85a5",
                    "approvers": {"U024BE7LH": "alice", "U0G9QF9C6": "bob"},
                }
            },
        },
        env={},
    )
    assert who_may_decide(settings) == (
        "operator tokens carol; Slack alice, bob; the CLI with access to the state store"
    )
