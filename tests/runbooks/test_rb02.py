"""RB-02 provider outage on the real engine: a real DawsOS Postgres, real Redis, the
official Kubernetes client against FakeKubeAPI, respx for the provider status URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import respx
import yaml

from remediator.clients.cache import Cache
from remediator.clients.database import TargetDatabase
from remediator.clients.http import HttpChecks
from remediator.clients.kubernetes import KubernetesClient
from remediator.runbooks import rb02_provider_outage as rb02
from remediator.testing import Harness, make_alert, resolved
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0103_fixtures as fx

ALERT = make_alert(
    "ProviderErrorRateHigh", {"severity": "warning", "service": "dawsos", "provider": "polygon"}
)
# Active alerts whose condition names polygon; pgn-103 was disabled by a human.
POLYGON_ACTIVE = [
    "6f1c2b7e-9d4a-4c1e-8b2f-3a5d7e9f1b24",
    "abc-123",
    "def-456",
    "pgn-101",
    "pgn-102",
    "pgn-104",
]
KEYS = ("fundamentals:AAPL", "prices:polygon:AAPL")


@pytest.fixture(params=fx.SCHEMAS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, TargetDatabase]]:
    async with fx.dawsos_db(request.config, request.param) as pair:
        yield pair


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        fx.add_workload(server, "worker")
        yield server


@pytest.fixture
async def kube(fake: FakeKubeAPI) -> AsyncIterator[KubernetesClient]:
    async with fx.kube_client(fake.url) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[tuple[HttpChecks, respx.MockRouter]]:
    async with fx.http_checks() as pair:
        yield pair


@pytest.fixture
async def redis_prefix(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A key prefix on the real Redis; the last-good keys are present under it."""
    async with fx.redis_keys(request.config) as (raw, prefix):
        for key in KEYS:
            await raw.set(prefix + key, b'{"pe": 31.2, "asof": "yesterday"}', ex=3600)
        yield prefix


@pytest.fixture
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    client = fx.cache_for(request.config)
    yield client
    await client.aclose()


def rules(prefix: str, **params: Any) -> str:
    return fx.rules_yaml(
        "RB-02",
        ["ProviderErrorRateHigh", "ProviderCircuitBreakerOpen"],
        {"cache_keys": [prefix + k for k in KEYS], **params},
    )


def harness(
    target: tuple[str, TargetDatabase],
    kube: KubernetesClient,
    http: HttpChecks,
    cache: Cache,
    prefix: str,
    *,
    with_settings: bool = True,
    **kw: Any,
) -> Harness:
    return Harness(
        fx.registry(),
        kw.pop("rules", rules(prefix)),
        clients=fx.clients(
            db=target[1], kube=kube, http=http, cache=cache, with_settings=with_settings
        ),
        **kw,
    )


async def steps_of(h: Harness, phase: str | None = None) -> dict[str, dict[str, Any]]:
    [run] = await h.runs()
    return {s["name"]: s for s in await h.steps(run["id"], phase)}


def paused(before: fx.Snapshot, ids: list[str]) -> fx.Snapshot:
    return fx.changed(before, "alerts", "id", {i: {"active": False} for i in ids})


# --------------------------------------------------------------------- live


async def test_live_outage_pauses_exactly_the_active_dependent_alerts(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
        page = fx.page_text(fx.last(h, "trigger"))
        [run] = await h.runs()
    assert await fx.snapshot(dsn) == paused(before, POLYGON_ACTIVE)
    assert steps["pause_alerts"]["changes"] == {
        "provider": "polygon",
        "paused": POLYGON_ACTIVE,
        "previous_active": True,
    }
    assert {n: s["outcome"] for n, s in steps.items()} == {
        "provider_status": "applied",
        "pause_alerts": "applied",
        "check_cache": "applied",
    }
    assert run["target"] == "RB-02:polygon" and run["severity"] == "P2"
    assert fake.requests == []  # nothing on the cluster until the alert resolves
    done = fx.section(page, "Done")
    assert any(
        d.startswith("Check the provider's status URL: polygon is DOWN (HTTP 503") for d in done
    )
    assert (
        "Pause the active alerts that depend on the provider: paused 6 alerts that depend"
        f" on polygon: {', '.join(POLYGON_ACTIVE)}"
    ) in done
    assert any(
        d.startswith(
            "Verify the cache serves last-good data: cache serves last-good"
            f" data for {redis_prefix}fundamentals:AAPL"
        )
        for d in done
    )
    assert fx.section(page, "Left for you") == []


async def test_resolve_reenables_only_what_it_paused_and_replays_the_dlq(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    dsn, db = target
    checks, router = http
    status = router.get(fx.PROVIDER_URLS["polygon"])
    status.respond(503, json={"status": "down"})
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(ALERT)
        # During the outage a human re-enables one paused alert on purpose.
        await db.execute("UPDATE alerts SET active = TRUE WHERE id = 'pgn-102'")
        status.respond(200, json={"status": "ok"})  # the provider recovered
        await h.deliver(resolved(ALERT))
        await h.deliver(resolved(ALERT))  # delivered twice: undone once
        undo = await steps_of(h, "undo")
        replay = (await steps_of(h, "resolve"))["replay_dlq"]
        page = fx.page_text(fx.last(h, "resolve"))
        [run] = await h.runs()
    # Everything is back as it was, and pgn-103 (disabled by a human) stayed disabled.
    after = await fx.snapshot(dsn)
    assert after == before
    assert next(r for r in after["alerts"] if r["id"] == "pgn-103")["active"] is False
    assert undo["pause_alerts"]["outcome"] == "rolled_back"
    assert undo["pause_alerts"]["result"]["data"]["reenabled"] == [
        i for i in POLYGON_ACTIVE if i != "pgn-102"
    ]
    assert replay["outcome"] == "applied"
    [post] = fx.job_posts(fake)
    name = f"replay-dlq-polygon-{run['id']}"
    assert post.body["metadata"]["name"] == name
    fx.assert_job_runs_in_workload(
        post.body,
        "worker",
        ["python", "-m", "jobs.replay_dlq", "--provider", "polygon", "--max-retries", "3"],
    )
    done = fx.section(page, "Done")
    assert any(
        d.startswith(
            "Pause the active alerts that depend on the provider [undo]:"
            " re-enabled the 5 alerts it paused"
        )
        and "already active, left alone: pgn-102" in d
        for d in done
    )
    assert (
        f"Replay the provider's dead-letter queue [resolve]: started DLQ replay job {name}"
        " for polygon" in done
    )


async def test_fred_outage_pauses_the_vix_alerts_too_and_resolve_reenables_exactly_those(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    """The runbook's step 3: the VIX alert needs live market data whatever provider its
    condition names; a VIX alert a human had disabled stays disabled."""
    dsn, db = target
    checks, router = http
    status = router.get(fx.PROVIDER_URLS["fred"])
    status.respond(503, json={"status": "down"})
    await db.execute(
        "INSERT INTO alerts (id, name, condition_json, active, cooldown_minutes)"
        " VALUES ('vix-off', 'VIX by hand', $1, FALSE, 15)",
        {"entity": "VIX", "op": ">", "val": 40},
    )
    before = await fx.snapshot(dsn)
    fred = sorted(
        r["id"]
        for r in before["alerts"]
        if r["condition_json"].get("provider") == "fred" and r["active"]
    )
    alert = make_alert("ProviderErrorRateHigh", {"service": "dawsos", "provider": "fred"})
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(alert)
        fired = await steps_of(h, "fire")
        after_fire = await fx.snapshot(dsn)
        status.respond(200, json={"status": "ok"})
        await h.deliver(resolved(alert))
        undo = await steps_of(h, "undo")
    expected = sorted([*fred, "abc-123"])
    assert fred and after_fire == paused(before, expected)
    assert fired["pause_alerts"]["changes"]["paused"] == expected
    assert fired["pause_alerts"]["result"]["data"]["by_entity"] == ["abc-123"]
    assert "(abc-123 by entity VIX)" in fired["pause_alerts"]["result"]["summary"]
    assert undo["pause_alerts"]["result"]["data"]["reenabled"] == expected
    assert await fx.snapshot(dsn) == before  # vix-off stayed disabled


def test_entity_alerts_param_is_validated() -> None:
    assert rb02.fed_entities("FRED", rb02.Params()) == ["VIX"]
    assert rb02.fed_entities("polygon", rb02.Params()) == []
    with pytest.raises(ValueError):
        rb02.Params.model_validate({"entity_alerts": {"fred": [""]}})


async def test_resolve_does_not_replay_while_the_provider_is_still_down(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    checks, router = http
    fx.providers_answer(router, down={"polygon": 502})
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(ALERT)
        await h.deliver(resolved(ALERT))
        replay = (await steps_of(h, "resolve"))["replay_dlq"]
    assert replay["outcome"] == "skipped"
    assert "polygon still reports down" in replay["reason"]
    assert fx.job_posts(fake) == []


async def test_redis_down_fails_only_the_cache_check(
    target, fake, kube, http, redis_prefix
) -> None:
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    before = await fx.snapshot(dsn)
    dead = Cache(f"redis://127.0.0.1:{fx.free_port()}/0", timeout=0.5)
    try:
        async with harness(target, kube, checks, dead, redis_prefix) as h:
            await h.deliver(ALERT)
            steps = await steps_of(h, "fire")
            page = fx.page_text(fx.last(h, "trigger"))
    finally:
        await dead.aclose()
    assert steps["pause_alerts"]["outcome"] == "applied"
    assert steps["check_cache"]["outcome"] == "failed"
    assert "cannot reach Redis" in steps["check_cache"]["reason"]
    assert await fx.snapshot(dsn) == paused(before, POLYGON_ACTIVE)
    assert any(
        item.startswith("Verify the cache serves last-good data FAILED: cache:")
        for item in fx.section(page, "Left for you")
    )


async def test_cache_misses_are_reported_for_a_human(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    rules_missing = rules(
        redis_prefix,
        cache_keys=[redis_prefix + "fundamentals:AAPL", redis_prefix + "fundamentals:MSFT"],
    )
    async with harness(target, kube, checks, cache, redis_prefix, rules=rules_missing) as h:
        await h.deliver(ALERT)
        check = (await steps_of(h, "fire"))["check_cache"]
    assert check["outcome"] == "failed"
    assert check["reason"] == (
        f"cache misses {redis_prefix}fundamentals:MSFT: users get errors, not last-good data"
    )


async def test_unconfirmed_outage_pauses_nothing(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    """A forged alert: the provider's own status page says it is fine. The run changes
    nothing, and it is blocked as not corroborated (counted), not merely skipped."""
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router)  # the status page says polygon is fine
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
        page = fx.page_text(fx.last(h, "trigger"))
        [run] = await h.runs()
        counted = fx.not_corroborated(h)
    assert await fx.snapshot(dsn) == before
    assert fake.requests == []
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    assert steps["provider_status"]["outcome"] == "skipped"
    assert steps["provider_status"]["reason"].startswith(
        "not corroborated: polygon reports healthy (HTTP 200"
    )
    assert "outage not confirmed" in steps["provider_status"]["reason"]
    assert steps["pause_alerts"]["outcome"] == "skipped"
    assert steps["pause_alerts"]["changes"] is None
    assert "whole run: blocked by guard not_corroborated" in fx.section(page, "Skipped (why)")


async def test_two_providers_outside_the_params_get_their_own_targets(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    """Providers configured in targets.http.providers but not in the rule's providers
    param each get RB-02:<provider>, so one's cooldown never blocks the other's."""
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503, "fred": 503})
    doc = yaml.safe_load(rules(redis_prefix, providers=["polygon"]))
    for rule in doc["rules"]:
        rule["cooldown"] = "15m"
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, cache, redis_prefix, rules=yaml.safe_dump(doc)) as h:
        await h.deliver(make_alert("ProviderErrorRateHigh", {"provider": "fmp"}))
        await h.deliver(make_alert("ProviderErrorRateHigh", {"provider": "FRED"}))
        runs = {r["alert"]["labels"]["provider"]: r for r in await h.runs()}
    assert {p: r["target"] for p, r in runs.items()} == {
        "fmp": "RB-02:fmp",
        "FRED": "RB-02:fred",  # the configured spelling
    }
    assert all(r["blocked_by"] is None for r in runs.values())
    # FRED's outage pauses the VIX alert too (entity_alerts' default).
    assert await fx.snapshot(dsn) == paused(
        before,
        ["abc-123", "fmp-201", "fmp-202", "fmp-203", "frd-301", "frd-302", "frd-303", "ghi-789"],
    )


# ------------------------------------------------------------------ dry-run


async def test_dry_run_changes_nothing_and_plans_every_step(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    before = await fx.snapshot(dsn)
    async with harness(
        target, kube, checks, cache, redis_prefix, settings={"mode": "dry-run"}
    ) as h:
        await h.deliver(ALERT)
        await h.deliver(resolved(ALERT))
        fire = await steps_of(h, "fire")
        resolve = await steps_of(h, "resolve")
        page = fx.page_text(fx.last(h, "trigger"))
    assert await fx.snapshot(dsn) == before
    assert fake.requests == []
    assert fire["pause_alerts"]["outcome"] == "dry_run"
    assert resolve["replay_dlq"]["outcome"] == "dry_run"
    calls = {n: s["rendered"] for n, s in {**fire, **resolve}.items()}
    assert set(calls) == {s.name for s in (*rb02.RUNBOOK.steps, *rb02.RUNBOOK.resolve_steps)}
    assert calls["provider_status"] == (
        "GET <targets.http.providers.polygon>  # expect 2xx and status ok"
    )
    assert (
        "WHERE (condition_json->>'provider' = $1 OR condition_json->>'entity' = ANY($2::text[]))"
        "\n  AND active" in calls["pause_alerts"]
    )
    assert "-- $2 = []" in calls["pause_alerts"]  # polygon feeds no entity alerts
    assert "-- $1 = 'polygon'" in calls["pause_alerts"]
    assert (
        "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active"
        in calls["pause_alerts"]
    )
    assert calls["check_cache"].startswith(f"redis-cli MGET {redis_prefix}fundamentals:AAPL")
    assert (
        f"kubectl exec deployment/worker -n {fx.NS} -- python -m jobs.replay_dlq --provider"
        " polygon --max-retries 3" in calls["replay_dlq"]
    )
    assert page.startswith("DRY-RUN: nothing was changed")
    assert any(
        s.startswith(
            "Pause the active alerts that depend on the provider: dry-run:"
            " not executed; would run: BEGIN;"
        )
        for s in fx.section(page, "Skipped (why)")
    )


# ------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    "provider",
    [
        "polygon' OR '1'='1",
        "../polygon",
        "polygon/../../fmp",
        "p" * 10_240,
        "polygon\n",
        "",
    ],
)
async def test_hostile_provider_label_changes_nothing_and_is_reported(
    target, fake, kube, http, cache, redis_prefix, provider: str
) -> None:
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    before = await fx.snapshot(dsn)
    alert = make_alert("ProviderCircuitBreakerOpen", {"provider": provider})
    async with harness(target, kube, checks, cache, redis_prefix) as h:
        await h.deliver(alert)
        await h.deliver(resolved(alert))
        fire = await steps_of(h, "fire")
        resolve = await steps_of(h, "resolve")
        page = fx.page_text(fx.last(h, "trigger"))
        [run] = await h.runs()
    assert await fx.snapshot(dsn) == before
    assert fake.requests == []
    assert not router.calls  # no status URL was built from the label either
    assert run["target"] == "RB-02:ProviderCircuitBreakerOpen:invalid"
    for s in (fire["provider_status"], fire["pause_alerts"], resolve["replay_dlq"]):
        assert s["outcome"] == "failed"
        assert s["reason"].startswith("rejected input provider: ")
    left = fx.section(page, "Left for you")
    assert any(
        item.startswith(
            "Pause the active alerts that depend on the provider FAILED: rejected input provider:"
        )
        for item in left
    )
    assert all(len(item) < 1200 for item in left)


async def test_provider_is_checked_against_the_configured_providers(
    target, fake, kube, http, cache, redis_prefix
) -> None:
    """With settings, a provider configured there but absent from params is accepted;
    without settings, only the params list counts."""
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})
    limited = rules(redis_prefix, providers=["polygon"])
    alert = make_alert("ProviderErrorRateHigh", {"provider": "FMP"})
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, cache, redis_prefix, rules=limited) as h:
        await h.deliver(alert)
        with_settings = await steps_of(h, "fire")
    fmp_active = ["fmp-201", "fmp-202", "fmp-203", "ghi-789"]
    assert with_settings["pause_alerts"]["changes"]["paused"] == fmp_active
    assert with_settings["pause_alerts"]["changes"]["provider"] == "fmp"  # configured spelling
    assert await fx.snapshot(dsn) == paused(before, fmp_active)

    async with harness(
        target, kube, checks, cache, redis_prefix, rules=limited, with_settings=False
    ) as h:
        await h.deliver(
            make_alert(
                "ProviderErrorRateHigh", {"provider": "fmp"}, starts_at="2026-11-28T02:00:00Z"
            )
        )
        without = await steps_of(h, "fire")
    assert without["pause_alerts"]["outcome"] == "failed"
    assert "not a configured provider (one of ['polygon'])" in without["pause_alerts"]["reason"]


def test_params_refuse_unsafe_values() -> None:
    for bad in (
        {"providers": ["poly gon"]},
        {"cache_keys": ["a b"]},
        {"cache_keys": []},
        {"replay_image": "img`id`"},
        {"replay_max_retries": 0},
        {"mode": "live"},
    ):
        with pytest.raises(ValueError):
            rb02.Params.model_validate(bad)
