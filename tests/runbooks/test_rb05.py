"""RB-05 Database incident on real parts: a seeded DawsOS Postgres with real sessions
blocking each other, RDS in moto (server mode) through the real AwsClient, the real
engine through the Harness.

The blocking sessions are real connections: a blocker holds a table lock in an open
transaction and one or two others wait on it, under dedicated test roles.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert, resolved
from tests.runbooks import _rb0406_fixtures as fx

ALERTS = ("DatabaseDown", "DatabaseSlowQueries", "DatabaseCPUHigh")
STARTS_AT = "2026-11-28T00:20:04.123Z"
SLOW = make_alert(
    "DatabaseSlowQueries", {"severity": "page", "service": "dawsos"}, starts_at=STARTS_AT
)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx.aws_environment(tmp_path_factory.mktemp("aws")), fx.moto_endpoint() as url:
        yield url


@dataclass
class World:
    dsn: str
    db: TargetDatabase
    clients: Clients
    rds: Any
    instance: str
    app_role: str = field(default_factory=lambda: f"rb05_app_{uuid.uuid4().hex[:8]}")
    protected_role: str = field(default_factory=lambda: f"rb05_ops_{uuid.uuid4().hex[:8]}")

    def rules(self, **params: Any) -> str:
        base = {
            "db_instance_identifier": self.instance,
            "block_threshold_seconds": 0,
            "long_query_seconds": 0,
            "max_terminations": 1,
            "protected_roles": ["postgres", "rdsadmin", self.protected_role],
        }
        return fx.rules_yaml("RB-05", ALERTS, {**base, **params})

    def describe(self, identifier: str | None = None) -> dict[str, Any]:
        found = self.rds.describe_db_instances(DBInstanceIdentifier=identifier or self.instance)
        return dict(found["DBInstances"][0])

    def instances(self) -> set[str]:
        return {i["DBInstanceIdentifier"] for i in self.rds.describe_db_instances()["DBInstances"]}


@pytest.fixture
async def world(request: pytest.FixtureRequest, moto_url: str) -> AsyncIterator[World]:
    async with fx.dawsos_db(request.config) as (dsn, db), fx.aws_client(moto_url) as aws:
        rds = fx.admin_client("rds", moto_url)
        instance = fx.unique("dawsos")
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            DBInstanceClass="db.r6g.xlarge",
            Engine="postgres",
            MultiAZ=True,
            AllocatedStorage=100,
            MasterUsername="dawsos",
            MasterUserPassword="not-a-secret-1",
        )
        w = World(dsn, db, Clients(database=db, aws=aws), rds, instance)
        for role in (w.app_role, w.protected_role):
            await db.execute(f'CREATE ROLE "{role}" LOGIN')
            await db.execute(
                f"GRANT SELECT, UPDATE ON portfolio_metrics, symbol_mapping, prices,"
                f' fx_rates TO "{role}"'
            )
        try:
            yield w
        finally:
            for role in (w.app_role, w.protected_role):
                await db.execute(f'DROP OWNED BY "{role}"')
                await db.execute(f'DROP ROLE "{role}"')


# ------------------------------------------------------------ real sessions


@dataclass
class Locks:
    """Who holds what: blocker name -> pid, and the waiting statements' tasks."""

    pids: dict[str, int]
    waiters: dict[str, tuple[int, asyncio.Task[str]]]
    conns: dict[str, asyncpg.Connection]


async def _connect(dsn: str, user: str, app: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, user=user, server_settings={"application_name": app})


async def _blocked(admin: asyncpg.Connection, pid: int) -> bool:
    return bool(await admin.fetchval("SELECT cardinality(pg_blocking_pids($1)) > 0", pid))


# A write that needs ROW EXCLUSIVE on the table and changes no row.
WRITES = {
    "portfolio_metrics": "UPDATE portfolio_metrics SET twr = twr WHERE FALSE",
    "symbol_mapping": "UPDATE symbol_mapping SET exchange = exchange WHERE FALSE",
    "prices": "UPDATE prices SET source = source WHERE FALSE",
    "fx_rates": "UPDATE fx_rates SET source = source WHERE FALSE",
}


@asynccontextmanager
async def blocking_sessions(w: World) -> AsyncIterator[Locks]:
    """Four blockers, each holding SHARE on its own table in an open transaction:

    A (app role)       portfolio_metrics, two writers waiting
    B (app role)       symbol_mapping,    one writer waiting
    P (protected role) prices,            three writers waiting
    S (postgres)       fx_rates,          three writers waiting

    P and S block the most, so a guard that let them through would pick them first.
    """
    plan = {
        "A": (w.app_role, "portfolio_metrics", 2),
        "B": (w.app_role, "symbol_mapping", 1),
        "P": (w.protected_role, "prices", 3),
        "S": ("postgres", "fx_rates", 3),
    }
    conns: dict[str, asyncpg.Connection] = {}
    locks = Locks({}, {}, conns)
    admin = await asyncpg.connect(w.dsn)
    try:
        for name, (role, table, n_waiters) in plan.items():
            blocker = conns[name] = await _connect(w.dsn, role, "batch-report")
            await blocker.execute(f"BEGIN; LOCK TABLE {table} IN SHARE MODE")
            locks.pids[name] = await blocker.fetchval("SELECT pg_backend_pid()")
            for i in range(n_waiters):
                wname = f"{name}-waiter{i}"
                waiter = conns[wname] = await _connect(w.dsn, w.app_role, "dawsos-api")
                pid = await waiter.fetchval("SELECT pg_backend_pid()")
                task = asyncio.create_task(waiter.execute(WRITES[table]))
                locks.waiters[wname] = (pid, task)
                while not await _blocked(admin, pid):
                    await asyncio.sleep(0.02)
        yield locks
    finally:
        for name, conn in conns.items():
            if "waiter" not in name:
                conn.terminate()
        for _pid, task in locks.waiters.values():
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        for conn in conns.values():
            conn.terminate()
        await admin.close()


def idle(instance: str) -> str:
    """The check a failover or scale-up makes first, as its call shows it."""
    return (
        f"{instance} is not rebooting, failing-over, modifying, upgrading, maintenance,"
        " creating, deleting or backtracking (its status is read first)"
    )


async def alive(dsn: str, pid: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid
            )
        )
    finally:
        await conn.close()


async def wait_gone(dsn: str, pid: int) -> None:
    """pg_terminate_backend signals; the backend exits a moment later."""
    for _ in range(250):
        if not await alive(dsn, pid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"pid {pid} is still there")


# ------------------------------------------------------------------ live path


async def test_terminates_exactly_the_unprotected_top_blocker_and_at_most_n(world: World) -> None:
    before = await fx.snapshot(world.dsn)
    async with (
        blocking_sessions(world) as locks,
        Harness(fx.registry(), world.rules(), clients=world.clients) as h,
    ):
        await h.deliver(SLOW)
        await wait_gone(world.dsn, locks.pids["A"])
        # A's writers get their lock and finish; everyone else still holds or waits.
        for i in range(2):
            assert await asyncio.wait_for(locks.waiters[f"A-waiter{i}"][1], 10) == "UPDATE 0"
        for name in ("B", "P", "S"):
            assert await alive(world.dsn, locks.pids[name]), name
            assert not locks.waiters[f"{name}-waiter0"][1].done(), name

        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        term = steps["terminate_blockers"]
        assert term["outcome"] == "applied"
        assert [t["pid"] for t in term["result"]["data"]["terminated"]] == [locks.pids["A"]]
        assert [t["pid"] for t in term["changes"]["terminated"]] == [locks.pids["A"]]
        spared = {s["pid"]: s["reason"] for s in term["result"]["data"]["spared"]}
        assert spared == {locks.pids["P"]: "protected role", locks.pids["S"]: "superuser role"}
        summary = term["result"]["summary"]
        assert summary.startswith(
            f"terminated pid {locks.pids['A']} ({world.app_role}, app"
            " 'batch-report') blocking 2 for"
        )
        assert f"over the limit of 1 per run, left for a human: pid {locks.pids['B']}" in summary
        pairs = {
            (p["blocker_pid"], p["blocked_pid"])
            for p in steps["blocking_sessions"]["result"]["data"]["pairs"]
        }
        assert pairs == {(locks.pids[wn[0]], pid) for wn, (pid, _t) in locks.waiters.items()}
        long_pids = {q["pid"] for q in steps["long_queries"]["result"]["data"]["queries"]}
        assert {pid for pid, _t in locks.waiters.values()} <= long_pids

        first, *_rest, last = h.pager.triggers()
        assert first.content.title == "[RB-05] DatabaseSlowQueries: paged first; diagnosis running"
        body = fx.page_text(last)
        assert f"Terminate sessions that block others: terminated pid {locks.pids['A']}" in body
        assert (
            f"spared pid {locks.pids['P']} ({world.protected_role}, app 'batch-report'):"
            " protected role" in body
        )
        assert f"pid {locks.pids['S']} (postgres, app 'batch-report'): superuser role" in body
        assert (
            f"{world.instance} is available (db.r6g.xlarge, Multi-AZ); no pending"
            " modifications" in body
        )
        assert "pg_stat_statements is not installed in this database" in body
        for step in ("failover", "scale_up", "point_in_time_restore"):
            assert f"remediator approve {await fx.approval_for(h, run['id'], step)}" in body
    assert await fx.snapshot(world.dsn) == before


async def test_blockers_below_the_threshold_are_left_alone(world: World) -> None:
    async with (
        blocking_sessions(world) as locks,
        Harness(
            fx.registry(), world.rules(block_threshold_seconds=3600), clients=world.clients
        ) as h,
    ):
        await h.deliver(SLOW)
        for name, pid in locks.pids.items():
            assert await alive(world.dsn, pid), name
        [run] = await h.runs()
        term = (await fx.steps_by_name(h, run["id"]))["terminate_blockers"]
        assert term["outcome"] == "skipped"
        assert "terminated nothing; " in term["reason"]
        assert f"below the 3600 s threshold: pid {locks.pids['A']}" in term["reason"]


async def test_dry_run_terminates_nothing_and_the_plan_renders_every_step(world: World) -> None:
    async with (
        blocking_sessions(world) as locks,
        Harness(
            fx.registry(), world.rules(), clients=world.clients, settings={"mode": "dry-run"}
        ) as h,
    ):
        await h.deliver(SLOW)
        for name, pid in locks.pids.items():
            assert await alive(world.dsn, pid), name
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert list(steps) == [s.name for s in fx.registry().get("RB-05").steps]  # type: ignore[union-attr]
        assert steps["terminate_blockers"]["outcome"] == "dry_run"
        terminate = steps["terminate_blockers"]["rendered"]
        assert "pg_terminate_backend(b.pid)" in terminate
        # Only the look's finds are unknown before the run; every other value is shown.
        assert "-- $1 = <chosen pids>\n-- $2 = <their backend_start>\n" in terminate
        assert (
            steps["rds_status"]["rendered"]
            == f"aws rds describe-db-instances --db-instance-identifier {world.instance}"
        )
        # Each call shows, after it, the checks its action makes first.
        assert steps["failover"]["rendered"] == (
            f"aws rds reboot-db-instance --db-instance-identifier {world.instance}"
            f" --force-failover  # only if {idle(world.instance)};"
            f" {world.instance} is Multi-AZ (else it fails: no standby to fail over to)"
        )
        assert steps["scale_up"]["rendered"].endswith(
            "--db-instance-class db.r6g.2xlarge --apply-immediately  # only if"
            f" {world.instance} is not db.r6g.2xlarge already; {idle(world.instance)}"
        )
        assert "--restore-time 2026-11-28T00:05:04Z" in steps["point_in_time_restore"]["rendered"]
        assert "FROM pg_stat_statements" in steps["top_statements"]["rendered"]
        assert steps["top_statements"]["rendered"].endswith(
            "-- only if the extension is installed and loaded (shared_preload_libraries);"
            " else skipped, saying which"
        )
        assert "pg_blocking_pids" in steps["blocking_sessions"]["rendered"]
        assert "FROM pg_stat_activity" in steps["long_queries"]["rendered"]
        assert "DRY-RUN: nothing was changed" in fx.page_text(h.pager.triggers()[-1])
    assert world.describe()["DBInstanceClass"] == "db.r6g.xlarge"


# ------------------------------------------------------------ corroboration


async def test_database_down_while_it_answers_terminates_nothing(world: World) -> None:
    """A forged DatabaseDown: the database answers with connections to spare, so the
    blockers it shows are no reason to kill anyone on this alert's word."""
    down = make_alert("DatabaseDown", {"service": "dawsos"}, starts_at=STARTS_AT)
    async with (
        blocking_sessions(world) as locks,
        Harness(fx.registry(), world.rules(), clients=world.clients) as h,
    ):
        await h.deliver(down)
        for name, pid in locks.pids.items():
            assert await alive(world.dsn, pid), name
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        counted = fx.not_corroborated(h)
        approvals = {a["step"]: a["state"] for a in await h.approvals(run["id"])}
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    reason = steps["confirm_incident"]["reason"]
    assert reason.startswith("not corroborated: DatabaseDown claims the database is down,")
    assert "client connections free: nothing terminated" in reason
    assert steps["terminate_blockers"]["outcome"] == "skipped"
    # Offered before the check, the failover is withdrawn with the run: a claim the
    # database contradicts must not leave a failover one click away.
    assert approvals == {"failover": "expired"}


async def test_database_down_out_of_connections_terminates_the_top_blocker(world: World) -> None:
    """The same alert when clients are refused (fewer free connections than the
    headroom): the claim holds and the blocker holding them up goes."""
    down = make_alert("DatabaseDown", {"service": "dawsos"}, starts_at=STARTS_AT)
    rules = world.rules(connection_headroom=100_000)  # every connection counts as taken
    async with (
        blocking_sessions(world) as locks,
        Harness(fx.registry(), rules, clients=world.clients) as h,
    ):
        await h.deliver(down)
        await wait_gone(world.dsn, locks.pids["A"])
        for name in ("B", "P", "S"):
            assert await alive(world.dsn, locks.pids[name]), name
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert run["blocked_by"] is None
    assert steps["confirm_incident"]["result"]["data"]["down"] is True
    assert [t["pid"] for t in steps["terminate_blockers"]["changes"]["terminated"]] == [
        locks.pids["A"]
    ]


async def test_a_label_cannot_name_the_session_to_terminate(world: World) -> None:
    """Labels naming B (pid, application, user) change nothing: the runbook's own read
    picks the top unprotected blocker, A, and only it."""
    async with (
        blocking_sessions(world) as locks,
        Harness(fx.registry(), world.rules(), clients=world.clients) as h,
    ):
        labels = {
            "pid": str(locks.pids["B"]),
            "application_name": "batch-report",
            "usename": world.app_role,
            "session": str(locks.pids["B"]),
        }
        await h.deliver(make_alert("DatabaseSlowQueries", labels, starts_at=STARTS_AT))
        await wait_gone(world.dsn, locks.pids["A"])
        assert await alive(world.dsn, locks.pids["B"])
        [run] = await h.runs()
        term = (await fx.steps_by_name(h, run["id"]))["terminate_blockers"]
    assert [t["pid"] for t in term["changes"]["terminated"]] == [locks.pids["A"]]
    assert str(locks.pids["B"]) not in term["rendered"]


# --------------------------------------------------------------- approve steps


async def test_scale_up_and_restore_wait_for_approval_then_run(world: World) -> None:
    restore = f"{world.instance}-restore-202611280005"  # startsAt - 15 min
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SLOW)
        [run] = await h.runs()
        assert world.describe()["DBInstanceClass"] == "db.r6g.xlarge"
        assert restore not in world.instances()

        await h.approve(await fx.approval_for(h, run["id"], "scale_up"))
        assert world.describe()["DBInstanceClass"] == "db.r6g.2xlarge"
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["scale_up"]["changes"] == {
            "instance": world.instance,
            "previous_class": "db.r6g.xlarge",
            "new_class": "db.r6g.2xlarge",
        }
        assert restore not in world.instances()

        await h.approve(await fx.approval_for(h, run["id"], "point_in_time_restore"))
        assert restore in world.instances()
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["point_in_time_restore"]["result"]["data"] == {
            "target": restore,
            "restore_time": "2026-11-28T00:05:04+00:00",
        }
        body = fx.page_text(h.pager.triggers()[-1])
        assert "--db-instance-class db.r6g.xlarge --apply-immediately" in body
        assert f"into new instance {restore}; verify it" in body

        await h.deliver(resolved(SLOW))
        # Nothing is scaled back or deleted on resolve.
        assert world.describe()["DBInstanceClass"] == "db.r6g.2xlarge"
        assert restore in world.instances()
        assert await h.steps(run["id"], "undo") == []


async def test_failover_of_a_cluster_moves_the_writer_after_approval(world: World) -> None:
    cluster = fx.unique("dawsos-cluster")
    world.rds.create_db_cluster(
        DBClusterIdentifier=cluster,
        Engine="aurora-postgresql",
        MasterUsername="dawsos",
        MasterUserPassword="not-a-secret-1",
    )
    members = [fx.unique("dawsos-a"), fx.unique("dawsos-b")]
    for m in members:
        world.rds.create_db_instance(
            DBInstanceIdentifier=m,
            DBInstanceClass="db.r6g.xlarge",
            Engine="aurora-postgresql",
            DBClusterIdentifier=cluster,
        )

    def writer() -> str:
        c = world.rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
        return next(
            str(m["DBInstanceIdentifier"]) for m in c["DBClusterMembers"] if m["IsClusterWriter"]
        )

    assert writer() == members[0]
    down = make_alert("DatabaseDown", {"job": "dawsos-postgres"}, starts_at=STARTS_AT)
    async with Harness(
        fx.registry(),
        # Every connection counts as taken: the database confirms the outage claim.
        world.rules(
            db_instance_identifier=members[0],
            db_cluster_identifier=cluster,
            connection_headroom=100_000,
        ),
        clients=world.clients,
    ) as h:
        await h.deliver(down)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert steps["failover"]["rendered"] == (
            f"aws rds failover-db-cluster --db-cluster-identifier {cluster}"
            f"  # only if {idle(members[0])}"
        )
        assert writer() == members[0]
        await h.approve(await fx.approval_for(h, run["id"], "failover"))
        assert writer() == members[1]
        body = fx.page_text(h.pager.triggers()[-1])
        assert f"failed over cluster {cluster} (status was available)" in body


async def test_failover_of_a_single_az_instance_is_refused_and_left_to_a_human(
    world: World,
) -> None:
    single = fx.unique("dawsos-single")
    world.rds.create_db_instance(
        DBInstanceIdentifier=single,
        DBInstanceClass="db.t3.medium",
        Engine="postgres",
        MultiAZ=False,
        AllocatedStorage=20,
        MasterUsername="dawsos",
        MasterUserPassword="not-a-secret-1",
    )
    async with Harness(
        fx.registry(), world.rules(db_instance_identifier=single), clients=world.clients
    ) as h:
        await h.deliver(SLOW)
        [run] = await h.runs()
        await h.approve(await fx.approval_for(h, run["id"], "failover"))
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["failover"]["outcome"] == "failed"
        body = fx.page_text(h.pager.triggers()[-1])
        assert f"FAILED: aws.rds: {single} is not Multi-AZ: no standby to fail over to" in body
        assert world.describe(single)["DBInstanceStatus"] == "available"


# ------------------------------------------------------- diagnosis details


async def test_pg_stat_statements_is_skipped_with_the_reason_when_absent_or_not_loaded(
    world: World,
) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SLOW)
        await world.db.execute("CREATE EXTENSION pg_stat_statements")
        await h.deliver(
            make_alert(
                "DatabaseCPUHigh", {"dbinstance_identifier": "dawsos-prod"}, starts_at=STARTS_AT
            )
        )
        absent, not_loaded = [
            (await fx.steps_by_name(h, r["id"]))["top_statements"]
            for r in sorted(await h.runs(), key=lambda r: r["created_at"])
        ]
        assert absent["outcome"] == not_loaded["outcome"] == "skipped"
        assert absent["reason"].startswith("pg_stat_statements is not installed")
        assert not_loaded["reason"].startswith("pg_stat_statements cannot be read:")
        assert "shared_preload_libraries" in not_loaded["reason"]


async def test_resolve_only_resolves_the_page(world: World) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SLOW)
        after_fire = await fx.snapshot(world.dsn)
        await h.deliver(resolved(SLOW))
        assert await fx.snapshot(world.dsn) == after_fire
        [run] = await h.runs()
        assert await h.steps(run["id"], "undo") == []
        assert await h.steps(run["id"], "resolve") == []
        assert {a["state"] for a in await h.approvals(run["id"])} == {"expired"}
        [page] = h.pager.resolves()
        assert page.content.title == "[RB-05] DatabaseSlowQueries: alert resolved"
        assert "Fail over to the standby (if the primary is down): approval" in fx.page_text(page)
    assert world.describe()["DBInstanceClass"] == "db.r6g.xlarge"


async def test_hostile_labels_never_reach_a_call(world: World) -> None:
    hostile = {
        "instance": "../../etc/passwd",
        "dbinstance_identifier": "x' OR 1=1 --",
        "job": "j" * 10_240,
    }
    async with (
        blocking_sessions(world) as locks,
        Harness(fx.registry(), world.rules(max_terminations=0), clients=world.clients) as h,
    ):
        before = await fx.snapshot(world.dsn)
        await h.deliver(make_alert("DatabaseCPUHigh", hostile, starts_at=STARTS_AT))
        for name, pid in locks.pids.items():
            assert await alive(world.dsn, pid), name
        assert await fx.snapshot(world.dsn) == before
        [run] = await h.runs()
        assert run["target"] == f"RB-05:{world.instance}"
        for step in await h.steps(run["id"]):
            for value in hostile.values():
                assert value[:40] not in step["rendered"], step["name"]
        body = fx.page_text(h.pager.triggers()[-1])
        assert "over the limit of 0 per run, left for a human" in body
        assert "j" * 300 not in body


def test_restore_time_follows_the_alert_start() -> None:
    from remediator.runbook_api.context import AlertView, StepContext
    from remediator.runbooks import rb05_database_incident as rb05

    alert = AlertView("DatabaseDown", "f", "2026-11-28T10:00:00Z", {}, {})
    ctx = StepContext(
        run_id="r",
        rule="x",
        runbook="RB-05",
        alert=alert,
        params=rb05.Params(pitr_minutes_before_alert=90),
        mode="dry-run",
        clients=Clients(),
    )
    when = datetime(2026, 11, 28, 10, tzinfo=UTC) - timedelta(minutes=90)
    restore = rb05.RUNBOOK.step("point_in_time_restore")
    assert restore.render(ctx=ctx).endswith(
        f"--restore-time {when:%Y-%m-%dT%H:%M:%SZ}  # only if data corruption is confirmed;"
        " the switch-over stays manual"
    )
