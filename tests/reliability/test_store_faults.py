"""The state store refuses, drops or loses its sessions: the daemon never stops silently.

Each case runs ``remediator serve`` as a real process on a real Postgres state store,
reached as a role of its own so a fault touches only this daemon's sessions:

- ``53300``: the role's CONNECTION LIMIT goes to 0 and its sessions are ended, so
  every reconnect is refused with "too many connections" (the repro of issue 17);
- ``57P01``: its sessions are terminated by an administrator (admin shutdown);
- ``08``: the network path to Postgres is cut (connection refused / reset).

During the fault ``/readyz`` and ``/metrics`` answer 503 and webhooks 503 (Alertmanager
retries). After it, with no restart: an alert posted after the fault is mitigated, a
page queued before it is delivered, and SIGTERM exits 0 without a traceback.

The SQLSTATE classes that cannot be provoked on a shared server (53100 disk full,
57P03 cannot connect now) are raised by the real server from a DO block in
``test_every_store_down_sqlstate_is_state_unavailable``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from remediator.errors import StateUnavailable
from remediator.state.store import StateStore
from remediator.testing import make_payload
from tests.conftest import PG_DSN, free_port
from tests.helpers import TcpProxy
from tests.reliability._bench import rows_of, world
from tests.reliability._faults_fixtures import PagerDutyFake, ServeProcess, eventually

pytestmark = pytest.mark.timeout(150)

FAULT_SECONDS = 6.0


def _as_role(dsn: str, role: str, port: int | None = None) -> str:
    parts = urlsplit(dsn)
    host = f"{role}@127.0.0.1:{port or parts.port or 5432}"
    return parts._replace(netloc=host).geturl()


@asynccontextmanager
async def _own_role(schema_dsn: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A login role owning nothing but its use of the test schema; dropped afterwards."""
    role = "rf_" + uuid.uuid4().hex[:10]
    schema = schema_dsn.rsplit("search_path=", 1)[1]
    admin = await asyncpg.connect(PG_DSN, timeout=5)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
    try:
        yield role, admin
    finally:
        await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        await _end_sessions(admin, role)
        await admin.execute(f'DROP OWNED BY "{role}" CASCADE')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def _end_sessions(admin: asyncpg.Connection, role: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
    )


async def _run_states(state_dsn: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(state_dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT r.alert::json #>> '{labels,provider}' AS provider, r.state"
            " FROM runs r ORDER BY created_at"
        )
    finally:
        await conn.close()
    return [(r["provider"], r["state"]) for r in rows]


@pytest.mark.parametrize("fault", ["53300", "57P01", "08"])
async def test_the_daemon_recovers_by_itself_from_a_state_store_fault(
    fault: str, request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with _own_role(pg_schema_dsn) as (role, admin), world(request.config, 2) as w:
        proxy = TcpProxy("127.0.0.1", urlsplit(PG_DSN).port or 5432)
        await proxy.start()
        state_dsn = _as_role(pg_schema_dsn, role, proxy.port)
        pd = PagerDutyFake(script=["500"] * 10_000)  # pages queue up until we say so
        await pd.start()
        (tmp_path / "rules.yaml").write_text(w.rules_yaml())
        config = {
            "listen": f"127.0.0.1:{free_port()}",
            "mode": "live",
            "rules": str(tmp_path / "rules.yaml"),
            "state": state_dsn,
            "targets": w.targets(),
            "pagers": {"pagerduty": {"routing_key": "pd-routing-key-faults", "url": pd.url}},
            "engine": {"lease": "2s", "poll_interval": "0.2s", "page_retry_max": "0.5s"},
        }
        proc = ServeProcess(tmp_path, config)
        try:
            await proc.start()
            async with httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
                first = await c.post("/api/v1/alerts", json=make_payload(w.alert(0)))
                assert first.status_code == 202, first.text
                await eventually(
                    lambda: _one_waiting(state_dsn, w.providers[0]), "the first run to finish"
                )
                await eventually(_async(lambda: len(pd.hits) >= 1), "a page attempt (500)")
                assert pd.accepted() == []  # queued in the outbox, not delivered

                if fault == "53300":
                    await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
                    await _end_sessions(admin, role)
                elif fault == "57P01":
                    await _end_sessions(admin, role)
                else:
                    proxy.cut()
                during = await _during_fault(c, w.alert(1), fault)
                if fault == "53300":
                    await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
                else:
                    proxy.restore()

                await eventually(_ready(c), "/readyz to answer 200 again", timeout=30)
                second = await c.post("/api/v1/alerts", json=make_payload(w.alert(1)))
                assert second.status_code == 202, second.text
                await eventually(
                    lambda: _one_waiting(state_dsn, w.providers[1]),
                    "the alert posted after the fault to be mitigated",
                    timeout=30,
                )
                pd.script.clear()  # PagerDuty is back: 202 from now on
                await eventually(
                    _async(lambda: len({p["dedup_key"] for p in pd.accepted()}) >= 2),
                    "the page queued before the fault, and the new one, to be delivered",
                    timeout=30,
                )
        finally:
            code = proc.stop()
            await pd.stop()
            await proxy.stop()
        changes = await w.changes()
    if fault == "57P01":
        # Sessions ended but reconnecting works at once: the fault may be too short for
        # /readyz to see; what matters is that nothing was lost and nothing died.
        assert during["webhook"] in (202, 503)
    else:
        assert during["readyz"] == 503, during
        assert during["metrics"] == 503, during
        assert during["webhook"] == 503, during
    paused = {c["row_id"] for c in changes if c["col"] == "active" and c["new"] == "false"}
    for provider in w.providers:  # both runs mitigated: before and after the fault
        assert set(rows_of(provider)) <= paused, (provider, changes)
    assert code == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.stderr_path.read_text(), proc.output()[-3000:]
    assert '"loop_crashed"' not in proc.output()


async def _during_fault(
    c: httpx.AsyncClient, alert: dict[str, object], fault: str
) -> dict[str, int]:
    """Wait out the fault, then read what each route answers while it lasts."""
    await asyncio.sleep(FAULT_SECONDS if fault != "57P01" else 0.5)
    readyz = await c.get("/readyz")
    metrics = await c.get("/metrics")
    webhook = await c.post("/api/v1/alerts", json=make_payload(alert))
    for r in (readyz, metrics, webhook):
        assert r.status_code < 500 or r.status_code == 503, r.text
        if r.status_code == 503:
            assert r.headers["content-type"].startswith("application/json")
    return {
        "readyz": readyz.status_code,
        "metrics": metrics.status_code,
        "webhook": webhook.status_code,
    }


async def _one_waiting(state_dsn: str, provider: str) -> bool:
    return (provider, "waiting") in await _run_states(state_dsn)


def _ready(c: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await c.get("/readyz")).status_code == 200

    return check


def _async(fn):  # type: ignore[no-untyped-def]
    async def check() -> object:
        return fn()

    return check


@pytest.mark.parametrize(
    "sqlstate", ["08006", "53100", "53200", "53300", "57P01", "57P02", "57P03"]
)
async def test_every_store_down_sqlstate_is_state_unavailable(
    sqlstate: str, pg_schema_dsn: str
) -> None:
    """The real server raises the SQLSTATE; the store turns it into StateUnavailable."""
    store = await StateStore.open(pg_schema_dsn)
    try:
        with pytest.raises(StateUnavailable, match=sqlstate):
            await store._execute(
                f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$"
            )
    finally:
        await store.close()


async def test_a_statement_error_is_not_mistaken_for_the_store_being_down(
    pg_schema_dsn: str,
) -> None:
    store = await StateStore.open(pg_schema_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await store._execute("SELECT * FROM no_such_table")
        assert not isinstance(caught.value, StateUnavailable)
    finally:
        await store.close()


async def test_sigterm_while_the_store_refuses_connections_exits_0_without_a_traceback(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with _own_role(pg_schema_dsn) as (role, admin), world(request.config, 1) as w:
        (tmp_path / "rules.yaml").write_text(w.rules_yaml())
        config = {
            "listen": f"127.0.0.1:{free_port()}",
            "mode": "live",
            "rules": str(tmp_path / "rules.yaml"),
            "state": _as_role(pg_schema_dsn, role),
            "targets": w.targets(),
            "engine": {"lease": "2s", "poll_interval": "0.2s"},
        }
        proc = ServeProcess(tmp_path, config)
        try:
            await proc.start()
            async with httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
                await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
                await _end_sessions(admin, role)
                await asyncio.sleep(2.0)
                refused = await c.post("/api/v1/alerts", json=make_payload(w.alert(0)))
                readyz = await c.get("/readyz")
        finally:
            code = proc.stop()
    assert refused.status_code == 503, refused.text
    assert readyz.status_code == 503 and "state store" in readyz.text, readyz.text
    assert code == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.stderr_path.read_text(), proc.output()[-3000:]
