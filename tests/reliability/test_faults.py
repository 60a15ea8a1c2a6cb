"""Faults, one test each, on real parts: what breaks, what the daemon does, what it pages.

    state store down      webhooks 503 (never 2xx), a direct page, everything resumes
    target DB down/slow   the step fails cleanly, the run pages, the circuit opens
    Kubernetes 500/409/hang   bounded retries (counted at the fake API server), then a page
    AWS throttling        retried (counted at a proxy in front of moto), then paged
    PagerDuty 429/500/timeout  retried from the durable outbox, delivered exactly once
    Redis down            RB-02's cache check fails cleanly, the rest goes on
    flapping alert        mitigations within the rule's limits, one page says so

Each test records its figures with ``_report.record("faults", ...)`` after its asserts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import kubernetes.client as k8s
import pytest

from remediator.clients.cache import Cache
from remediator.clients.database import TargetDatabase
from remediator.clients.kubernetes import KubernetesClient
from remediator.paging.pagerduty import PagerDutyPager
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.runbooks import (
    rb02_provider_outage,
    rb03_alert_storm,
    rb04_rights_violation,
    rb06_security_incident,
)
from remediator.state.store import StateStore
from remediator.testing import Harness, make_alert, make_payload, resolved
from tests.engine import _testbook
from tests.fixtures.dawsos import SUSPICIOUS_IP
from tests.fixtures.kube_api import FakeKubeAPI
from tests.helpers import TcpProxy, running_daemon
from tests.reliability._faults_fixtures import (
    PagerDutyFake,
    ThrottlingProxy,
    daemon_with,
    eventually,
    soak,
)
from tests.reliability._report import record
from tests.runbooks import _rb0103_fixtures as fx13
from tests.runbooks import _rb0406_fixtures as fx46

NS = "prod"


def via(proxy: TcpProxy, dsn: str) -> str:
    """``dsn`` rewritten to go through ``proxy``."""
    parts = urlsplit(dsn)
    return dsn.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)


async def tcp_proxy(dsn_or_url: str) -> TcpProxy:
    parts = urlsplit(dsn_or_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    return proxy


def kube_client(url: str, timeout: float = 0.5) -> KubernetesClient:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = False
    return KubernetesClient(k8s.ApiClient(cfg), NS, request_timeout=timeout)


# ------------------------------------------------------------ state store down


async def test_state_store_down_refuses_with_503_pages_directly_and_resumes_everything(
    pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Postgres (the state store) goes away in the middle of a run, with one occurrence
    journaled and not yet processed. Webhooks get 503, never 2xx; a direct page reaches
    PagerDuty; when Postgres is back, the interrupted run and the waiting occurrence are
    finished, nothing is applied twice, and every run's page goes out."""
    async with asyncpg.create_pool(pg_schema_dsn, min_size=1, max_size=2) as admin:
        await admin.execute(_testbook.SCHEMA)
    proxy = await tcp_proxy(pg_schema_dsn)
    pd = PagerDutyFake()
    await pd.start()
    target = await TargetDatabase.connect(pg_schema_dsn)  # the target stays up
    (tmp_path / "rules.yaml").write_text(_testbook.rules(params="{hang_second: true}"))
    config = {
        "mode": "live",
        "state": via(proxy, pg_schema_dsn),
        "rules": str(tmp_path / "rules.yaml"),
        "limits": {"workers": 1},
        "engine": {"lease": "1s", "poll_interval": "0.1s", "page_retry_max": "0.2s"},
    }
    pager = PagerDutyPager("pd-routing-key-state-down", pd.url, timeout=2.0)
    first = make_alert("TestAlert", {"service": "checkout"})
    waiting = make_alert("TestAlert", {"service": "search"})
    during = make_alert("TestAlert", {"service": "cart"})
    refused: list[int] = []
    releaser: asyncio.Task[None] | None = None
    try:
        async with (
            daemon_with(
                config,
                pagers={"pagerduty": pager},
                registry=_testbook.registry(),
                clients=Clients(database=target),
            ) as d,
            httpx.AsyncClient(base_url=d.url, timeout=30) as c,
        ):
            assert (await c.post("/api/v1/alerts", json=make_payload(first))).status_code == 202
            # The only worker is now inside step 'second' of the first run.
            await eventually(lambda: _gate_count(1), "the first run to reach step 'second'")
            assert (await c.post("/api/v1/alerts", json=make_payload(waiting))).status_code == 202

            proxy.cut()
            for _ in range(5):
                r = await c.post("/api/v1/alerts", json=make_payload(during))
                refused.append(r.status_code)
                assert r.json()["error"] == "journal_unavailable"
            assert (await c.get("/readyz")).status_code == 503
            direct = await eventually(
                _async(
                    lambda: [
                        b for b in pd.accepted() if b["dedup_key"] == "remediator/journal-down"
                    ]
                ),
                "the direct page to reach PagerDuty",
            )
            # From now on every run passes step 'second'; the first one finishes it while
            # the store is down, so recording its outcome fails.
            releaser = asyncio.create_task(_release_gates())
            await asyncio.sleep(0.5)

            proxy.restore()
            r = await c.post("/api/v1/alerts", json=make_payload(during))
            assert r.status_code == 202, r.text
            store = d.daemon.store

            seen: list[Any] = []

            async def all_fired() -> bool:
                runs = await store.list_runs(10)
                seen[:] = [(x["alert"]["labels"]["service"], x["state"], x["owner"]) for x in runs]
                return len(runs) == 3 and all(x["state"] == "waiting" for x in runs)

            await eventually(all_fired, "all three runs to finish", diagnostics=lambda: seen)
            runs = await store.list_runs(10)

            async def journal_done() -> list[Any]:
                # The done mark is batched by the finisher, just after each run's hand-over.
                rows = await store.list_occurrences(10)
                return rows if all(o["state"] == "done" for o in rows) else []

            journal = await eventually(journal_done, "every occurrence to be marked done")
            await eventually(
                _async(
                    lambda: (
                        len(
                            [
                                b
                                for b in pd.accepted()
                                if b["dedup_key"] != "remediator/journal-down"
                            ]
                        )
                        >= 3
                    )
                ),
                "each run's page",
            )
    finally:
        if releaser is not None:
            releaser.cancel()
        for ev in _testbook.GATE.values():
            ev.set()
        _testbook.GATE.clear()
        await proxy.stop()
        await target.aclose()
        await pd.stop()
    assert refused == [503] * 5
    assert len(direct) == 1
    assert direct[0]["payload"]["summary"].startswith("remediator cannot reach its state store")
    assert sorted(r["alert"]["labels"]["service"] for r in runs) == ["cart", "checkout", "search"]
    # every run went as far as it may without a human (its last step awaits approval)
    assert {r["outcome"] for r in runs} == {"partial"}
    assert all(o["state"] == "done" for o in journal)
    calls = await _testbook_calls(pg_schema_dsn)
    # one mitigation per run: the interrupted run was finished, not redone
    assert calls.count("throttle") == 3
    run_pages = {
        b["dedup_key"] for b in pd.accepted() if b["dedup_key"] != "remediator/journal-down"
    }
    assert run_pages == {f"remediator/{r['id']}" for r in runs}
    record(
        "faults",
        name="state store down",
        injected=1,
        survived=1,
        refused_503=len(refused),
        direct_pages=len(direct),
        runs=len(runs),
    )


def _async(fn: Any) -> Any:
    async def check() -> Any:
        return fn()

    return check


async def _release_gates() -> None:
    while True:
        for ev in list(_testbook.GATE.values()):
            ev.set()
        await asyncio.sleep(0.02)


async def _gate_count(n: int) -> bool:
    return len(_testbook.GATE) >= n


async def _testbook_calls(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["step"] for r in await conn.fetch("SELECT step FROM calls ORDER BY id")]
    finally:
        await conn.close()


# ------------------------------------------------------- target database faults


def rb04_registry() -> Registry:
    r = Registry()
    r.register(rb04_rights_violation.RUNBOOK)
    return r


def rights_alert(provider: str, starts_at: str = "2026-11-28T00:09:04.123Z") -> dict[str, Any]:
    return make_alert(
        "RightsExportViolation", {"provider": provider, "service": "dawsos"}, starts_at=starts_at
    )


@pytest.mark.parametrize("fault", ["down", "slow"])
async def test_target_database_down_or_slow_fails_the_step_pages_and_opens_the_circuit(
    request: pytest.FixtureRequest, fault: str
) -> None:
    """The DawsOS database stops answering (connections cut) or answers too slowly (a
    lock held past statement_timeout). Each run's first step fails with the target's
    error (no internal error), later steps are skipped, the run pages; after 3 failed
    runs the circuit opens with one page and the next run is blocked; when the database
    is back, the half-open trial run succeeds and closes the circuit."""
    async with fx46.dawsos_db(request.config) as (dsn, _db):
        proxy = await tcp_proxy(dsn)
        target = await TargetDatabase.connect(via(proxy, dsn), statement_timeout_ms=300)
        holder = await asyncpg.connect(dsn)
        rules = fx46.rules_yaml("RB-04", ["RightsExportViolation"])
        lock: Any = None
        try:
            async with Harness(
                rb04_registry(),
                rules,
                clients=Clients(database=target),
                settings={"engine": {"circuit_failures": 3, "circuit_reset": "1s"}},
            ) as h:
                if fault == "down":
                    proxy.cut()
                else:
                    lock = holder.transaction()
                    await lock.start()
                    await holder.execute("LOCK TABLE provider_rights IN ACCESS EXCLUSIVE MODE")
                for provider in ("FMP", "POLYGON", "FRED", "NEWS"):
                    await h.deliver(rights_alert(provider))
                runs = sorted(await h.runs(), key=lambda r: r["created_at"])
                first_steps = {s["name"]: s for s in await h.steps(runs[0]["id"], "fire")}
                circuit = await h.store.get_circuit("RB-04")
                pages = list(h.pager.triggers())

                # The database comes back; after circuit_reset one trial run is let through.
                if fault == "down":
                    proxy.restore()
                else:
                    await lock.rollback()
                    lock = None
                await asyncio.sleep(1.1)
                await h.deliver(rights_alert("FMP", starts_at="2026-11-28T01:00:00Z"))
                trial = max(await h.runs(), key=lambda r: r["created_at"])
                closed = await h.store.get_circuit("RB-04")
        finally:
            if lock is not None:
                await lock.rollback()
            await holder.close()
            await target.aclose()
            await proxy.stop()
    assert [r["outcome"] for r in runs] == ["failed", "failed", "failed", "blocked"]
    assert runs[3]["blocked_by"] == "circuit_open"
    inspect = first_steps["inspect_registry"]
    assert inspect["outcome"] == "failed"
    assert inspect["attempts"] == 3  # bounded retries of a temporary error
    expected = "statement timed out" if fault == "slow" else "database:"
    assert expected in inspect["reason"], inspect["reason"]
    assert "internal error" not in inspect["reason"]
    assert first_steps["restrict_exports"]["outcome"] == "skipped"
    assert circuit is not None and circuit["state"] == "open"
    failed_pages = [p for p in pages if p.content.alertname == "RightsExportViolation"]
    assert len(failed_pages) == 3
    assert all(
        any(
            "Inspect the provider's rights registry row FAILED" in x
            for x in p.content.left_for_human
        )
        for p in failed_pages
    )
    assert len([p for p in pages if p.content.alertname == "RemediatorCircuitOpen"]) == 1
    # the trial run acted (its approve-only steps wait for a human)
    assert trial["outcome"] == "partial" and trial["blocked_by"] is None
    assert closed is not None and closed["state"] == "closed"
    record(
        "faults",
        name=f"target database {fault}",
        injected=4,
        survived=4,
        failed_runs=3,
        blocked_runs=1,
        circuit_pages=1,
    )


# -------------------------------------------------------------- Kubernetes faults

SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/scheduler/scale"
STORM = make_alert("AlertStorm", {"severity": "critical", "service": "dawsos"})


@pytest.mark.parametrize(
    ("fault", "count"),
    [("500", 10), ("409", 10), ("hang", 10), ("500", 2)],
    ids=["500", "409-conflict", "hang", "500-then-ok"],
)
async def test_kubernetes_errors_are_retried_a_bounded_number_of_times_then_paged(
    request: pytest.FixtureRequest, fault: str, count: int
) -> None:
    """RB-03's approved "scale the evaluator to 0" meets a Kubernetes API that answers
    500, 409 Conflict, or hangs past the request timeout. The step is tried exactly its
    3 attempts (counted at the fake API server) with backoff, then fails and the page
    says so; a fault that clears within the attempts ends in one successful scale."""
    registry = Registry()
    registry.register(rb03_alert_storm.RUNBOOK)
    async with fx13.dawsos_db(request.config) as (_dsn, db), FakeKubeAPI() as fake:
        fake.add_deployment(NS, "scheduler", replicas=2)
        kube = kube_client(fake.url, timeout=0.5)
        try:
            async with Harness(
                registry,
                fx13.rules_yaml("RB-03", ["AlertStorm"]),
                clients=Clients(database=db, kubernetes=kube),
            ) as h:
                await h.deliver(STORM)
                [run] = await h.runs()
                approval = next(
                    a["id"]
                    for a in await h.approvals(run["id"])
                    if a["step"] == "scale_evaluator_down"
                )
                if fault == "hang":
                    fake.hang_next("PATCH", SCALE_PATH + "$", 3.0, count=count)
                else:
                    fake.fail_next("PATCH", SCALE_PATH + "$", int(fault), count=count)
                await h.approve(approval)
                step = next(
                    s
                    for s in await h.steps(run["id"], "approved")
                    if s["name"] == "scale_evaluator_down"
                )
                page = h.pager.triggers()[-1]
        finally:
            await kube.aclose()
        patches = [r for r in fake.requests if r.method == "PATCH" and r.path == SCALE_PATH]
        dep = fake.get("deployments", NS, "scheduler")
    assert dep is not None
    if count >= 3:
        assert len(patches) == 3  # the step's attempts, no more
        assert step["outcome"] == "failed" and step["attempts"] == 3
        assert dep["spec"]["replicas"] == 2
        assert page.content.title.endswith("approved step scale_evaluator_down: failed")
        assert any("FAILED" in x and "kubernetes" in x for x in page.content.left_for_human)
    else:
        assert len(patches) == count + 1
        assert step["outcome"] == "applied" and step["attempts"] == count + 1
        assert dep["spec"]["replicas"] == 0
        assert page.content.title.endswith("approved step scale_evaluator_down: applied")
    record(
        "faults",
        name=f"kubernetes {fault} x{count}",
        injected=min(count, 3),
        survived=min(count, 3),
        requests=len(patches),
    )


# ------------------------------------------------------------------ AWS throttling


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx46.aws_environment(tmp_path_factory.mktemp("aws")), fx46.moto_endpoint() as url:
        yield url


@pytest.mark.parametrize("throttled", [2, 100], ids=["clears", "persists"])
async def test_aws_throttling_is_retried_then_paged(
    request: pytest.FixtureRequest, moto_url: str, throttled: int
) -> None:
    """RB-06 blocks the source IP in a WAF IP set (moto) behind a proxy that answers
    ThrottlingException to the first N WAF calls. Throttling is retried within the
    step's 3 attempts: cleared after 2 the IP is blocked once; persistent, the step
    fails after exactly 3 calls and the P0 page says to block by hand."""
    registry = Registry()
    registry.register(rb06_security_incident.RUNBOOK)
    waf = fx46.admin_client("wafv2", moto_url)
    name = fx46.unique("dawsos-blocked-ips")
    created = waf.create_ip_set(Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[])
    ip_set_id = created["Summary"]["Id"]
    proxy = ThrottlingProxy(moto_url, match="AWSWAF_20190729.", throttle=throttled)
    await proxy.start()
    # Live blocking needs an allow_list (RB-06 refuses to block without one).
    params = {
        "waf_ip_set_name": name,
        "waf_ip_set_id": ip_set_id,
        "allow_list": ["198.51.100.0/24"],
    }
    rules = fx46.rules_yaml("RB-06", ["SuspiciousRequestRate"], params)
    alert = make_alert(
        "SuspiciousRequestRate",
        {"source_ip": SUSPICIOUS_IP, "severity": "page", "service": "dawsos"},
    )
    try:
        async with (
            fx46.dawsos_db(request.config) as (_dsn, db),
            fx46.aws_client(proxy.url) as aws,
            Harness(registry, rules, clients=Clients(database=db, aws=aws)) as h,
        ):
            await h.deliver(alert)
            [run] = await h.runs()
            step = next(
                s for s in await h.steps(run["id"], "fire") if s["name"] == "block_source_ip"
            )
            page = h.pager.triggers()[-1]
    finally:
        await proxy.stop()
    blocked = waf.get_ip_set(Name=name, Scope="REGIONAL", Id=ip_set_id)["IPSet"]["Addresses"]
    if throttled >= 3:
        # one throttled call per attempt, then no more calls
        assert proxy.throttled == 3 and len(proxy.matching) == 3
        assert step["outcome"] == "failed" and step["attempts"] == 3
        assert "Throttling" in step["reason"]
        assert blocked == []
        assert any(
            x.startswith("Block the source IP in the WAF IP set FAILED")
            for x in page.content.left_for_human
        )
    else:
        assert proxy.throttled == 2
        assert step["outcome"] == "applied" and step["attempts"] == 3
        assert blocked == [f"{SUSPICIOUS_IP}/32"]
        assert [t for t in proxy.matching if t.endswith("UpdateIPSet")] == [
            "AWSWAF_20190729.UpdateIPSet"
        ]
    record(
        "faults",
        name=f"aws throttling x{min(throttled, 3)}",
        injected=proxy.throttled,
        survived=proxy.throttled,
        requests=len(proxy.matching),
    )


# ------------------------------------------------------------------ PagerDuty faults


async def test_pagerduty_429_500_and_timeouts_are_retried_from_the_outbox_and_delivered_once(
    pg_schema_dsn: str, tmp_path: Path
) -> None:
    """PagerDuty answers 429 with Retry-After, 429 without, 500, then does not answer
    in time, then accepts. The page is retried from the durable outbox (across a
    restart of the daemon after the first 429), waits at least Retry-After, keeps one
    dedup_key, and is accepted exactly once."""
    async with asyncpg.create_pool(pg_schema_dsn, min_size=1, max_size=2) as admin:
        await admin.execute(_testbook.SCHEMA)
    target = await TargetDatabase.connect(pg_schema_dsn)
    pd = PagerDutyFake(["429:1", "429", "500", "hang", "202"])
    await pd.start()
    (tmp_path / "rules.yaml").write_text(_testbook.rules())
    config = {
        "mode": "live",
        "state": pg_schema_dsn,
        "rules": str(tmp_path / "rules.yaml"),
        "engine": {"poll_interval": "0.1s", "page_retry_max": "0.2s"},
    }
    alert = make_alert("TestAlert", {"service": "checkout"})
    try:
        pager = PagerDutyPager("pd-routing-key-outbox", pd.url, timeout=0.5)
        async with (
            daemon_with(
                config,
                pagers={"pagerduty": pager},
                registry=_testbook.registry(),
                clients=Clients(database=target),
            ) as d,
            httpx.AsyncClient(base_url=d.url) as c,
        ):
            assert (await c.post("/api/v1/alerts", json=make_payload(alert))).status_code == 202
            store = d.daemon.store

            async def after_first_429() -> Any:
                rows = await store.list_pages()
                return rows and rows[0]["last_error"] and "429" in rows[0]["last_error"] and rows[0]

            row = await eventually(after_first_429, "the first 429 to be recorded")
        # A new process on the same state store takes over the outbox.
        pager2 = PagerDutyPager("pd-routing-key-outbox", pd.url, timeout=0.5)
        async with daemon_with(
            config,
            pagers={"pagerduty": pager2},
            registry=_testbook.registry(),
            clients=Clients(database=target),
        ) as d2:
            await eventually(_async(lambda: pd.accepted()), "PagerDuty to accept the page")
            await asyncio.sleep(1.0)  # time for a duplicate to show, if there were one
            [sent] = await d2.daemon.store.list_pages()
            retries = d2.sample(
                "remediator_pages_total",
                {"pager": "pagerduty", "event": "trigger", "outcome": "retry"},
            )
    finally:
        await target.aclose()
        await pd.stop()
    assert [h.answered for h in pd.hits] == [429, 429, 500, 0, 202]
    assert row["next_attempt_at"] >= pd.hits[0].at + 1.0 - 0.05  # Retry-After: 1 honoured
    assert len(pd.accepted()) == 1
    assert len({h.body["dedup_key"] for h in pd.hits}) == 1
    assert sent["state"] == "sent" and sent["attempts"] == 5
    assert retries == 3  # 429 without Retry-After, 500, timeout (after the restart)
    record(
        "faults",
        name="pagerduty 429/500/timeout",
        injected=4,
        survived=4,
        deliveries=len(pd.accepted()),
    )


# ---------------------------------------------------------------------- Redis down


async def test_redis_down_fails_only_the_cache_check_and_recovers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Redis dies while the daemon runs RB-02 (its connections were warm), then comes
    back. During the outage the cache check fails with the cache's error after its
    bounded attempts; the provider check, the pause and, on resolve, the resume and the
    DLQ replay all go on; afterwards the cache check passes again."""
    registry = Registry()
    registry.register(rb02_provider_outage.RUNBOOK)
    shared = fx13.shared(request.config)
    async with (
        fx13.redis_keys(request.config) as (raw, prefix),
        fx13.dawsos_db(request.config) as (_dsn, db),
        fx13.http_checks() as (checks, router),
        FakeKubeAPI() as fake,
    ):
        await raw.set(prefix + "fundamentals:AAPL", b'{"pe": 31.2}', ex=600)
        fake.add_deployment(NS, "worker", replicas=1)  # the DLQ replay Job copies its pod
        proxy = await tcp_proxy(shared.REDIS_URL)
        cache = Cache(via(proxy, shared.REDIS_URL), timeout=0.5)
        kube = kube_client(fake.url, timeout=2.0)
        rules = fx13.rules_yaml(
            "RB-02", ["ProviderErrorRateHigh"], {"cache_keys": [prefix + "fundamentals:AAPL"]}
        )
        try:
            rules_path = tmp_path / "rules.yaml"
            rules_path.write_text(rules)
            config = {
                "mode": "live",
                "state": f"sqlite:///{tmp_path}/state.db",
                "rules": str(rules_path),
                "engine": {"poll_interval": "0.1s"},
                "targets": {"kubernetes": {"mode": "off", "namespace": NS}},
            }
            clients = Clients(
                database=db, cache=cache, http=checks, kubernetes=kube, settings=fx13.settings()
            )
            async with (
                running_daemon(config, registry=registry, clients=clients) as d,
                httpx.AsyncClient(base_url=d.url) as c,
            ):
                router.route(url__startswith=d.url).pass_through()
                outcomes = {}
                for provider, redis_up in (("polygon", True), ("fmp", False), ("fred", True)):
                    fx13.providers_answer(router, down={provider: 503})
                    if redis_up:
                        proxy.restore()
                    else:
                        proxy.cut()
                    a = make_alert(
                        "ProviderErrorRateHigh",
                        {"severity": "warning", "service": "dawsos", "provider": provider},
                    )
                    assert (await c.post("/api/v1/alerts", json=make_payload(a))).status_code == 202
                    run = await _wait_run(d.daemon.store, provider)
                    steps = {
                        s["name"]: s for s in await d.daemon.store.steps_for_run(run["id"], "fire")
                    }
                    outcomes[provider] = steps
                    # The provider recovers: the resolve resumes the alerts, replays the DLQ.
                    fx13.providers_answer(router)
                    assert (
                        await c.post("/api/v1/alerts", json=make_payload(resolved(a)))
                    ).status_code == 202
                    await eventually(
                        lambda run_id=run["id"]: _undone(d.daemon.store, run_id),
                        f"{provider} undo",
                    )
                    outcomes[provider + ":undo"] = {
                        s["name"]: s
                        for s in await d.daemon.store.steps_for_run(run["id"])
                        if s["phase"] in ("resolve", "undo")
                    }
                pages = [e for e in d.pager.triggers() if e.content.runbook == "RB-02"]
        finally:
            await cache.aclose()
            await kube.aclose()
            await proxy.stop()
    down = outcomes["fmp"]
    assert down["check_cache"]["outcome"] == "failed"
    assert down["check_cache"]["attempts"] == 2
    assert "cache:" in down["check_cache"]["reason"]
    assert down["provider_status"]["outcome"] == "applied"
    assert down["pause_alerts"]["outcome"] in ("applied", "skipped")
    assert outcomes["fmp:undo"]["replay_dlq"]["outcome"] == "applied"
    if down["pause_alerts"]["outcome"] == "applied":
        assert outcomes["fmp:undo"]["pause_alerts"]["outcome"] == "rolled_back"
    for provider in ("polygon", "fred"):
        assert outcomes[provider]["check_cache"]["outcome"] == "applied", outcomes[provider]
    fmp_page = next(p for p in pages if p.content.labels.get("provider") == "fmp")
    assert any(
        x.startswith("Verify the cache serves last-good data FAILED: cache:")
        for x in fmp_page.content.left_for_human
    )
    record("faults", name="redis down", injected=1, survived=1)


async def _wait_run(store: StateStore, provider: str) -> dict[str, Any]:
    async def done() -> Any:
        for r in await store.list_runs(20):
            if r["alert"]["labels"].get("provider") == provider and r["state"] == "waiting":
                return r
        return None

    return await eventually(done, f"the {provider} run to fire")


async def _undone(store: StateStore, run_id: str) -> bool:
    run = await store.get_run(run_id)
    return run is not None and run["state"] == "done"


# ------------------------------------------------------------------ flapping alert


async def flap(request: pytest.FixtureRequest, tmp_path: Path, *, flaps: int, guard: str) -> None:
    registry = Registry()
    registry.register(rb03_alert_storm.RUNBOOK)
    limit = 4
    extra = (
        {"cooldown": "30m", "max_runs_per_hour": limit}
        if guard == "cooldown"
        else {"cooldown": 0, "max_runs_per_hour": limit}
    )
    rules = fx46.rules_yaml("RB-03", ["AlertStorm"], **extra)
    (tmp_path / "rules.yaml").write_text(rules)
    async with fx13.dawsos_db(request.config) as (dsn, db):
        before = await fx13.snapshot(dsn)
        config = {
            "mode": "live",
            "state": f"sqlite:///{tmp_path}/state.db",
            "rules": str(tmp_path / "rules.yaml"),
            "engine": {"poll_interval": "0.1s"},
        }
        started = time.monotonic()
        async with (
            running_daemon(config, registry=registry, clients=Clients(database=db)) as d,
            httpx.AsyncClient(base_url=d.url, timeout=30) as c,
        ):
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                a = make_alert(
                    "AlertStorm",
                    {"severity": "critical", "service": "dawsos"},
                    starts_at=f"2026-11-28T00:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z",
                )
                async with sem:
                    for body in (a, resolved(a)):
                        r = await c.post("/api/v1/alerts", json=make_payload(body))
                        assert r.status_code == 202, r.text

            await asyncio.gather(*(one(i) for i in range(flaps)))
            store = d.daemon.store

            async def settled() -> bool:
                runs = await store.list_runs(flaps + 10)
                return (
                    (await store.count_pending()) == 0
                    and len(runs) == flaps
                    and all(
                        r["state"] == "done"
                        or (
                            r["state"] == "waiting"
                            and r["undo_state"] is None
                            and r["resolved_at"] is None
                        )
                        for r in runs
                    )
                )

            await eventually(settled, "the flaps to be processed", timeout=90)
            await asyncio.sleep(0.5)  # outbox
            runs = await store.list_runs(flaps + 10)
            steps = [s for r in runs for s in await store.steps_for_run(r["id"])]
            pages = list(d.pager.triggers())
        after = await fx13.snapshot(dsn)
        elapsed = time.monotonic() - started
    acted = [r for r in runs if r["blocked_by"] is None]
    blocked = [r for r in runs if r["blocked_by"] is not None]
    applied = [
        s
        for s in steps
        if s["name"] == "global_cooldown" and s["phase"] == "fire" and s["outcome"] == "applied"
    ]
    undone = [
        s
        for s in steps
        if s["name"] == "global_cooldown" and s["phase"] == "undo" and s["outcome"] == "rolled_back"
    ]
    assert 1 <= len(acted) <= limit
    assert len(applied) <= limit
    # lock_busy: flaps that arrived while a run on the same target was still going
    assert {r["blocked_by"] for r in blocked} <= {guard, "lock_busy"}
    # Which guard stops the flaps depends on timing: while the first run still holds
    # the target's lock every flap is lock_busy; after it, the rule's own guard.
    # Either way every flap after the first is blocked, and each guard that engaged
    # says so in exactly one page per clock hour.
    assert len(blocked) >= flaps - limit
    assert len(undone) == len(applied)  # every mitigation undone once on its resolve
    # the emergency brake is off again: every cooldown is back as it was
    assert [(r["id"], r["cooldown_minutes"]) for r in after["alerts"]] == [
        (r["id"], r["cooldown_minutes"]) for r in before["alerts"]
    ]
    guard_pages = []
    for engaged in {r["blocked_by"] for r in blocked}:
        these = [p for p in pages if f"{engaged} engaged" in p.content.title]
        # one page per rule, guard and clock hour (a run that straddles an hour gets two)
        hours = {int(r["created_at"] // 3600) for r in blocked if r["blocked_by"] == engaged}
        assert len(these) == len(hours), [p.content.title for p in these]
        assert any(f"blocked by guard {engaged}" in x for x in these[0].content.skipped)
        guard_pages += these
    record(
        "faults",
        name=f"flapping alert x{flaps} ({guard})",
        injected=flaps,
        survived=flaps,
        runs=len(runs),
        mitigations=len(applied),
        blocked=len(blocked),
        guard_pages=len(guard_pages),
        duration_s=round(elapsed, 1),
    )


@pytest.mark.parametrize("guard", ["cooldown", "rate_limit"])
async def test_flapping_alert_stays_within_limits_and_one_page_says_so(
    request: pytest.FixtureRequest, tmp_path: Path, guard: str
) -> None:
    """AlertStorm fires and resolves 100 times as fast as the webhook takes it, each
    flap a new startsAt. RB-03 acts at most max_runs_per_hour times (once, under a
    cooldown), every mitigation is undone once, every other flap is blocked by the
    guard, and exactly one page says the guard engaged."""
    await flap(request, tmp_path, flaps=100, guard=guard)


@pytest.mark.parametrize("guard", ["cooldown", "rate_limit"])
async def test_flapping_alert_500_times(
    request: pytest.FixtureRequest, tmp_path: Path, guard: str
) -> None:
    await flap(request, tmp_path, flaps=500, guard=guard)


for _mark in soak(900):
    test_flapping_alert_500_times = _mark(test_flapping_alert_500_times)
