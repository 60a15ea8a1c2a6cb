"""Never lose an alert: 503 (never 2xx) when the journal is down; a 202 survives kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from remediator.models import WebhookPayload, occurrences
from remediator.paging.capture import CapturePager
from remediator.state.backend import PostgresBackend
from remediator.state.store import StateStore
from remediator.testing import make_alert, make_payload
from tests.conftest import free_port
from tests.helpers import TcpProxy, running_daemon
from tests.support import wait_ready


async def test_postgres_down_gives_503_never_2xx_and_recovers(pg_schema_dsn, tmp_path):
    parts = urlsplit(pg_schema_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    via_proxy = pg_schema_dsn.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    (tmp_path / "rules").mkdir()
    cfg = {"state": via_proxy, "rules": str(tmp_path / "rules")}
    try:
        async with (
            running_daemon(cfg, workers=False) as d,
            httpx.AsyncClient(base_url=d.url, timeout=30) as c,
        ):
            a = make_alert("DatabaseDown", {"instance": "db1"})
            proxy.cut()
            for _ in range(3):
                r = await c.post("/api/v1/alerts", json=make_payload(a))
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "journal_unavailable"
            assert (await c.get("/readyz")).status_code == 503
            assert d.sample("remediator_webhooks_received_total", {"code": "503"}) == 3
            await asyncio.sleep(0.1)  # the direct page goes out in the background
            assert isinstance(d.pager, CapturePager)
            direct = [e for e in d.pager.sent if e.content.alertname == "RemediatorJournalDown"]
            assert len(direct) == 1  # rate-limited: one page, not one per request
            proxy.restore()
            r = await c.post("/api/v1/alerts", json=make_payload(a))
            assert r.status_code == 202
            assert (await c.get("/readyz")).status_code == 200
    finally:
        await proxy.stop()
    store = await StateStore.open(pg_schema_dsn)
    try:
        assert len(await store.list_occurrences()) == 1
    finally:
        await store.close()


def _serve(config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "remediator", "serve", "--config", str(config)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


async def test_kill_9_right_after_202_keeps_the_occurrence(tmp_path):
    port = free_port()
    (tmp_path / "rules").mkdir()
    state = f"sqlite:///{tmp_path}/state.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{port}\nstate: {state}\nrules: {tmp_path}/rules\n")
    proc = _serve(cfg, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        alerts = [make_alert("PricingPackBuildSlow", {"i": str(i)}) for i in range(25)]
        async with httpx.AsyncClient() as c:
            r = await c.post(url + "/api/v1/alerts", json=make_payload(*alerts))
        assert r.status_code == 202
        proc.send_signal(signal.SIGKILL)  # no chance to flush anything after the 202
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = await StateStore.open(state)
    try:
        rows = await store.list_occurrences(100)
    finally:
        await store.close()
    assert sorted(r["fingerprint"] for r in rows) == sorted(a["fingerprint"] for a in alerts)


async def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(tmp_path):
    port = free_port()
    (tmp_path / "rules").mkdir()
    state = f"sqlite:///{tmp_path}/state.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{port}\nstate: {state}\nrules: {tmp_path}/rules\n")
    proc = _serve(cfg, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        async with httpx.AsyncClient(timeout=20) as c:
            sends = [
                asyncio.create_task(
                    c.post(
                        url + "/api/v1/alerts", json=make_payload(make_alert("A", {"i": str(i)}))
                    )
                )
                for i in range(50)
            ]
            # signal while requests are still in flight: after the first answer
            await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
            proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*sends, return_exceptions=True)
        started = time.monotonic()
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    accepted = [r for r in results if isinstance(r, httpx.Response) and r.status_code == 202]
    store = await StateStore.open(state)
    try:
        rows = await store.list_occurrences(100)
    finally:
        await store.close()
    # every 202 is journaled; requests refused during shutdown were never acknowledged
    assert len(rows) >= len(accepted) > 0


async def test_postgres_journal_insert_commits_durably_on_its_own(pg_schema_dsn):
    # The journal's INSERT runs outside BEGIN, on its own pool, so its commit must wait
    # for the WAL flush on that pool's sessions even where the database's default is
    # off (the DSN below says off, as a server tuned for speed might); the bookkeeping
    # pool keeps it off on purpose.
    store = await StateStore.open(pg_schema_dsn + "&synchronous_commit=off")
    try:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        async with backend.statement(durable=True) as c:
            rows = await c.fetch("SELECT current_setting('synchronous_commit') AS v")
        assert rows == [{"v": "on"}]
        async with backend.read() as c:
            assert await c.fetch("SELECT current_setting('synchronous_commit') AS v") == [
                {"v": "off"}
            ]
        # The journal's one-statement path still tells a new row from a repeat.
        a = make_alert("DatabaseDown", {"instance": "db1"})
        occ = occurrences(WebhookPayload.model_validate(make_payload(a)), time.time())
        assert await store.append_occurrences(occ) == [True]
        assert await store.append_occurrences(occ) == [False]
    finally:
        await store.close()


async def test_postgres_pool_never_hands_on_an_open_transaction(pg_schema_dsn):
    # Sessions carry no reset query (nothing of ours outlives a transaction); a
    # transaction a caller left open must never reach the next user, or its writes
    # would ride on someone else's COMMIT. The pool drops such a session.
    backend = PostgresBackend(pg_schema_dsn, min_size=1, max_size=1)  # one session
    await backend.open()
    try:
        async with backend.read() as c:
            [first] = await c.fetch("SELECT pg_backend_pid() AS pid")
        async with backend.read() as c:
            [same] = await c.fetch("SELECT pg_backend_pid() AS pid")
            await c.execute("BEGIN")
            await c.execute("INSERT INTO flags (name, value, updated_at, updated_by)"
                            " VALUES ('left-open', '1', 0, 't')")  # fmt: skip
        async with backend.transaction() as c:
            [again] = await c.fetch("SELECT pg_backend_pid() AS pid")
            rows = await c.fetch("SELECT value FROM flags WHERE name = 'left-open'")
        assert same == first  # a session used normally is reused...
        assert again != first  # ...one left in a transaction is not
        assert rows == []  # and its uncommitted write is gone with it
    finally:
        await backend.close()
