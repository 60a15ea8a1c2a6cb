"""The daemon: opens resources once, runs the loops, closes everything on stop.

Loops (all in one process, any number of processes per state store):
  journal writer   group-commits webhook occurrences (server -> journal)
  workers          claim journaled occurrences and hand them to the engine
  maintenance      renews run leases, resumes runs whose owner died, starts
                   deferred undos, expires approvals, runs approved steps
  outbox           delivers pages, with retries
  retention        prunes finished rows, on one replica at a time (state/retention.py)
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from remediator import commandline, logs
from remediator.background import Background
from remediator.engine import rules as rules_mod
from remediator.engine.rules import RuleSet
from remediator.engine.runner import Decision, Engine
from remediator.engine.verify import warnings as verify_warnings
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.paging import routing
from remediator.paging.base import PageContent, Pager
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry, load_entry_points
from remediator.settings import Settings
from remediator.state import retention
from remediator.state.journal import JournalWriter
from remediator.state.store import StateStore
from remediator.supervisor import Supervisor

log = logs.get("remediator.daemon")

SHUTDOWN_GRACE = 5.0  # seconds in-flight occurrences get on SIGTERM


def freeze_startup_heap() -> int:
    """Hide everything alive now from the cyclic garbage collector; the count frozen.

    Call once in a serving process, after start. Imports (boto3, kubernetes, pydantic,
    aiohttp), the rules and the clients leave tens of thousands of tracked objects
    (84,000 in `remediator serve` with no rules) that live as long as the process.
    Every full (generation 2) collection walked all of them with the event loop
    stopped: 47-65 ms, three times in a 30 s storm at 200 alerts/s (bench scenario
    2). Frozen, they are never walked again and a full collection sees only what came
    after: 9-20 ms in the same run. They are never freed, as they would not have been
    anyway. Not for tests: one process starts many daemons there, and each freeze
    would keep its garbage for good.
    """
    gc.collect()  # what startup already dropped is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()


# Severity routing lives in paging/routing.py; these names stay for their callers.
DEFAULT_SEVERITIES = routing.DEFAULT_SEVERITIES
severity_routes = routing.severity_routes


def build_pagers(settings: Settings, store: StateStore | None = None) -> dict[str, Pager]:
    """The configured pagers. The Slack bot (``bot_token``) keeps its messages in the
    state store; without a ``store`` (tools that only render) the webhook is used."""
    from remediator.paging.opsgenie import OpsgeniePager
    from remediator.paging.pagerduty import PagerDutyPager
    from remediator.paging.slack import SlackPager

    pagers: dict[str, Pager] = {}
    p = settings.pagers
    configured = routing.configured_pagers(p)
    routed = routing.for_settings(p)
    routing.warn_at_start(routed, configured)
    routes = {name: routed.severities_for(name) for name in configured}
    if p.pagerduty is not None:
        pagers["pagerduty"] = PagerDutyPager(
            p.pagerduty.routing_key.get_secret_value(),
            p.pagerduty.url,
            severities=routes["pagerduty"],
        )
    if p.opsgenie is not None:
        pagers["opsgenie"] = OpsgeniePager(
            p.opsgenie.api_key.get_secret_value(), p.opsgenie.url, severities=routes["opsgenie"]
        )
    if p.slack is not None and p.slack.bot_token is not None and store is not None:
        from remediator.paging.slack_api import SlackWebApi
        from remediator.paging.slack_bot import SlackBotPager

        api = SlackWebApi(p.slack.bot_token.get_secret_value(), p.slack.api_url)
        pagers["slack"] = SlackBotPager(
            api, p.slack.channel or "", store, severities=routes["slack"]
        )
    elif p.slack is not None and p.slack.webhook_url is not None:
        pagers["slack"] = SlackPager(
            p.slack.webhook_url.get_secret_value(), severities=routes["slack"]
        )
    return pagers


def secret_values(settings: Settings) -> list[str]:
    out = [t.get_secret_value() for t in settings.auth.webhook_tokens]
    out += [t.get_secret_value() for t in settings.auth.named_operator_tokens().values()]
    p = settings.pagers
    if p.pagerduty:
        out.append(p.pagerduty.routing_key.get_secret_value())
    if p.opsgenie:
        out.append(p.opsgenie.api_key.get_secret_value())
    if p.slack:
        out += [s.get_secret_value() for s in (p.slack.webhook_url, p.slack.bot_token) if s]
    if settings.approvals.slack:
        out.append(settings.approvals.slack.signing_secret.get_secret_value())
    if settings.targets.grafana is not None:
        out.append(settings.targets.grafana.token.get_secret_value())
    http = settings.targets.http
    out += [http.app_token.get_secret_value()] if http.app_token else []
    for provider in http.providers.values():
        out += [
            v.get_secret_value() for v in (*provider.headers.values(), *provider.params.values())
        ]
    from urllib.parse import urlsplit

    for dsn in (settings.state, settings.targets.database, settings.targets.redis):
        if dsn is not None:
            pw = urlsplit(dsn.get_secret_value()).password
            if pw:
                out.append(pw)
    return out


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        registry: Registry | None = None,
        pagers: dict[str, Pager] | None = None,
        clients: Clients | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = registry if registry is not None else load_entry_points()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pagers = pagers
        self._clients = clients
        self.ruleset: RuleSet | None = None
        self.rule_errors: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []
        # New journal entries, one event per dispatch lane: a lane clears its own
        # before it claims, and must never swallow another lane's wake-up.
        self._wakes = {"dispatch": asyncio.Event(), "dispatch_p0": asyncio.Event()}
        self._maint_wake = asyncio.Event()
        self._finished: asyncio.Queue[int] = (
            asyncio.Queue()
        )  # processed occurrence ids  # approvals decided, undo requested
        self._last_direct_page = 0.0
        self._closing: list[Any] = []
        self.supervisor = Supervisor(self.metrics)
        self._p0_names: frozenset[str] = frozenset()  # alert names of P0 runbooks' rules

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, workers: bool = True) -> None:
        logs.register_secrets(secret_values(self.settings))
        self.store = await StateStore.open(self.settings.state.get_secret_value())
        pg = self.store.backend.dialect == "postgres"
        self.journal = JournalWriter(
            self.store, self.metrics, flushers=4 if pg else 1, on_commit=self._wake
        )
        self.journal.start()
        ok, detail = self.reload_rules()
        if not ok:
            log.error("rules_invalid_at_start", errors=detail)
        if self.settings.targets.grafana is None:
            from remediator.engine.sources import GRAFANA_UNCORROBORATED

            log.warning("grafana_not_corroborated", detail=f"every rule: {GRAFANA_UNCORROBORATED}")
        pagers = self._pagers
        if pagers is None:
            pagers = build_pagers(self.settings, self.store)
        # Known label values start at zero, so rate() sees the first event of each.
        self.metrics.prime(
            {rb.id: [s.name for s in (*rb.steps, *rb.resolve_steps)] for rb in self.registry},
            pagers,
        )
        self.outbox = Outbox(
            self.store,
            pagers,
            self.metrics,
            owner=self.owner,
            retry_max=self.settings.engine.page_retry_max,
            max_pages_per_hour=self.settings.pagers.max_pages_per_hour,
            actions_command=commandline.command(self.settings, "actions --limit 100"),
        )
        clients = self._clients if self._clients is not None else await self._open_clients()
        self.engine = Engine(
            store=self.store,
            registry=self.registry,
            metrics=self.metrics,
            settings=self.settings,
            clients=clients,
            outbox=self.outbox,
            owner=self.owner,
            rules=lambda: self.ruleset,
        )
        self.background = Background(limit=max(8, self.settings.limits.workers))
        self.engine.background = self.background
        self._closing.append(self.engine.verifier.aclose)
        self.metrics.paused.set(1 if await self.engine.is_paused() else 0)
        if workers:
            sup = self.supervisor
            poll = self.settings.engine.poll_interval
            # A loop that has not beaten for this long is reported stalled by /readyz.
            stall = max(30.0, 10 * poll, 3 * self.settings.engine.lease)
            general = self.settings.limits.workers
            # P0 lane: workers of its own, on top of limits.workers, for the alerts of
            # P0 runbooks, claimed ahead of everything else (the general lane takes
            # any alert, P0 ones included). Carving them out of limits.workers cost
            # a quarter of the throughput of every other alert.
            p0_workers = max(1, general // 4)
            sup.spawn(
                "dispatch", lambda: self._dispatch("dispatch", general, None), stall_after=stall
            )
            sup.spawn(
                "dispatch_p0",
                lambda: self._dispatch("dispatch_p0", p0_workers, self.p0_alertnames),
                stall_after=stall,
            )
            sup.spawn("finisher", self._finish_processed, stall_after=stall)
            sup.spawn("maintenance", self._maintenance, stall_after=stall)
            sup.spawn("heartbeat", self._heartbeat, stall_after=stall)
            sup.spawn(
                "outbox",
                lambda: self.outbox.run_forever(beat=lambda: sup.beat("outbox")),
                stall_after=stall,
            )
            sup.spawn("retention", self._retention, stall_after=stall)

    async def _open_clients(self) -> Clients:
        from remediator.daemon import clients as factory

        clients, closers = await factory.open_clients(self.settings)
        self._closing += closers
        return clients

    async def stop(self) -> None:
        """Finish in-flight work: the journal drains, running occurrences get a grace
        period (then their runs keep a lease another replica resumes), and the
        processed ones are marked done before the store closes."""
        with suppress(Exception):
            await self.journal.close()
        await self.supervisor.stop(["dispatch", "dispatch_p0"])
        try:
            ids = []
            while not self._finished.empty():
                ids.append(self._finished.get_nowait())
            await self.store.finish_occurrences(ids, self.owner)
        except Exception as exc:  # their claims expire and they are processed again
            log.warning("stop_finish_failed", error=str(exc))
        await self.supervisor.stop()
        await self.background.stop(SHUTDOWN_GRACE)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for pager in self.outbox.pagers.values():
            with suppress(Exception):
                await pager.aclose()
        for close in self._closing:
            with suppress(Exception):
                await close()
        with suppress(Exception):
            await self.store.close()

    # ---------------------------------------------------------------- rules

    def reload_rules(self) -> tuple[bool, Any]:
        ruleset, errors = rules_mod.load(self.settings.rules, self.registry)
        if ruleset is None:
            self.metrics.rule_reloads.labels("failure").inc()
            self.rule_errors = errors
            log.error("rules_reload_failed", errors=errors, kept=len(self.ruleset or ()))
            return False, errors
        self.ruleset = ruleset
        self._p0_names = self._find_p0_names()
        self.rule_errors = []
        self.metrics.rule_reloads.labels("success").inc()
        log.info("rules_loaded", rules=len(ruleset), files=ruleset.sources)
        for warning in verify_warnings(ruleset, self.settings.targets.prometheus is not None):
            log.warning("rule_warning", detail=warning)
        return True, len(ruleset)

    def known_alertnames(self) -> frozenset[str]:
        return self.ruleset.alertnames if self.ruleset is not None else frozenset()

    def routed(self, labels: dict[str, str]) -> bool:
        """Can a firing alert with these labels start a run? Without a valid rule set
        nobody knows yet, so the answer is yes: its occurrence waits for the workers."""
        ruleset = self.ruleset
        return ruleset is None or ruleset.routes(labels)

    # ------------------------------------------------------------ operations

    async def set_paused(self, paused: bool, who: str) -> None:
        await self.engine.set_paused(paused, who)

    async def decide(self, approval_id: int, decision: str, who: str) -> Decision:
        result = await self.engine.decide(approval_id, decision, who)
        self._maint_wake.set()
        return result

    async def readiness_problems(self) -> list[str]:
        problems = []
        try:
            await self.store.ping()
        except StateUnavailable as exc:
            problems.append(f"state store unreachable: {exc}")
        if self.ruleset is None:
            problems.append("no valid rules loaded")
        problems += self.supervisor.problems()
        return problems

    async def refresh_gauges(self, *, strict: bool = False) -> None:
        """Read the gauges from the state store; ``strict``: raise when it is down."""
        try:
            await self._read_gauges()
        except StateUnavailable:
            if strict:
                raise

    async def _read_gauges(self) -> None:
        self.metrics.queue_depth.set(await self.store.count_pending())
        self.metrics.approvals_pending.set(await self.store.count_pending_approvals())
        self.metrics.paused.set(1 if await self.engine.is_paused() else 0)
        for c in await self.store.all_circuits():
            self.metrics.circuit_state.labels(c["runbook"]).set(
                {"closed": 0, "half-open": 1, "open": 2}.get(c["state"], 0)
            )

    async def journal_down(self, reason: str) -> None:
        """The journal is unreachable: page directly (at most every 5 minutes)."""
        now = time.time()
        if now - self._last_direct_page < 300:
            return
        self._last_direct_page = now
        content = PageContent(
            dedup_key="remediator/journal-down",
            severity="P1",
            title="remediator cannot reach its state store: alerts are being refused (503)",
            alertname="RemediatorJournalDown",
            runbook="-",
            rule="-",
            mode="live",
            left_for_human=(
                "restore the state store; Alertmanager keeps retrying",
                f"error: {reason[:200]}",
            ),
        )
        task = asyncio.create_task(self.outbox.send_direct(content))
        self._tasks.append(task)

    # ---------------------------------------------------------------- loops

    def _wake(self, alertnames: frozenset[str] | None = None) -> None:
        """New work: the general lane always; the P0 lane only for P0 alerts (its
        claim is a query of its own, so every other commit would cost one more)."""
        self._wakes["dispatch"].set()
        if alertnames is None or not alertnames.isdisjoint(self._p0_names):
            self._wakes["dispatch_p0"].set()

    def p0_alertnames(self) -> list[str]:
        """Alert names that start a P0 runbook (rules with an ``alertname="X"`` matcher)."""
        return sorted(self._p0_names)

    def _find_p0_names(self) -> frozenset[str]:
        ruleset = self.ruleset
        if ruleset is None:
            return frozenset()
        names = set()
        for rule in ruleset.rules:
            runbook = self.registry.get(rule.runbook)
            if runbook is None or runbook.severity != "P0":
                continue
            names |= {m.value for m in rule.matchers if m.name == "alertname" and m.op == "="}
        return frozenset(names)

    async def _dispatch(
        self, name: str, workers: int, only: Callable[[], list[str]] | None
    ) -> None:
        """Claim journaled occurrences as workers free up, and process each in a task.

        At most ``limits.workers`` occurrences are in progress; claims and the
        "done" marks are batched, so an alert storm costs a few statements per batch
        rather than two transactions per alert.
        """
        slots = asyncio.Semaphore(workers)
        wake = self._wakes[name]
        lease = self.settings.engine.lease
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                self.supervisor.beat(name)
                # Wait for one free worker before claiming, beating while all are busy.
                while True:
                    try:
                        await asyncio.wait_for(slots.acquire(), self.settings.engine.poll_interval)
                        break
                    except TimeoutError:
                        self.supervisor.beat(name)
                free = 1
                while free < 64 and not slots.locked():
                    await slots.acquire()
                    free += 1
                # Clear before claiming: a commit after this point wakes us again.
                wake.clear()
                try:
                    alertnames = only() if only is not None else None
                    rows = await self.store.claim_occurrences(
                        self.owner, free, lease, alertnames=alertnames
                    )
                except StateUnavailable as exc:
                    log.warning("worker_state_unavailable", error=str(exc))
                    rows = []
                    await asyncio.sleep(self.settings.engine.poll_interval)
                for _ in range(free - len(rows)):
                    slots.release()
                for occ in rows:
                    task = asyncio.create_task(self._process(occ, slots))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if not rows:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.settings.engine.poll_interval)
        finally:
            # Shutting down: let in-flight occurrences finish for a moment; a run cut
            # short keeps its lease and is resumed by this or another replica.
            if running:
                _, pending = await asyncio.wait(running, timeout=SHUTDOWN_GRACE)
                for task in pending:
                    task.cancel()

    async def _process(self, occ: dict[str, Any], slots: asyncio.Semaphore) -> None:
        try:
            if occ["attempts"] > 5:
                raise RuntimeError("gave up after 5 attempts")
            await self.engine.process(occ)
        except StateUnavailable as exc:
            # Leave it claimed: the lease expires and it is claimed again.
            log.warning(
                "occurrence_retry_later",
                error=str(exc),
                fingerprint=occ["fingerprint"],
                alertname=occ["alertname"],
            )
            return
        except Exception as exc:  # recorded on the occurrence, never lost
            log.exception(
                "occurrence_failed", fingerprint=occ["fingerprint"], alertname=occ["alertname"]
            )
            with suppress(StateUnavailable):
                await self.store.finish_occurrence(occ["id"], self.owner, repr(exc)[:500])
            return
        finally:
            slots.release()
        self._finished.put_nowait(occ["id"])

    async def _finish_processed(self) -> None:
        """Mark processed occurrences done, many per statement (group commit again)."""
        while True:
            self.supervisor.beat("finisher")
            try:
                first = await asyncio.wait_for(self._finished.get(), 5.0)
            except TimeoutError:
                continue
            ids = [first]
            while not self._finished.empty():
                ids.append(self._finished.get_nowait())
            try:
                await self.store.finish_occurrences(ids, self.owner)
            except StateUnavailable as exc:
                # Not marked: their claims expire and they are processed again, which
                # is harmless (runs are unique per rule, fingerprint and startsAt).
                log.warning("finish_state_unavailable", error=str(exc), occurrences=len(ids))

    async def maintenance_once(self) -> None:
        if await self.store.requeue_expired_claims():
            self._wake()
        await self.engine.maintain()
        await self.refresh_gauges()

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs this process executes, on its own clock.

        Not in the maintenance pass: that pass resumes runs one after the other, and
        while it was busy the leases of our other runs ran out, so another replica
        took them over while we were still executing them (two replicas, one run).
        """
        interval = max(0.05, self.settings.engine.lease / 3)
        while True:
            self.supervisor.beat("heartbeat")
            try:
                await self.engine.renew_leases()
            except StateUnavailable as exc:
                log.warning("heartbeat_state_unavailable", error=str(exc))
            await asyncio.sleep(interval)

    async def _maintenance(self) -> None:
        interval = max(
            0.05, min(self.settings.engine.poll_interval, self.settings.engine.lease / 3)
        )
        while True:
            self.supervisor.beat("maintenance")
            # Cleared before the pass, not after: a decision made while the pass runs
            # (after it looked for approved steps) must wake the next pass at once,
            # not wait out the interval (an approval's step started up to 1 s late).
            self._maint_wake.clear()
            try:
                await self.maintenance_once()
            except StateUnavailable as exc:
                log.warning("maintenance_state_unavailable", error=str(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._maint_wake.wait(), interval)

    # ------------------------------------------------------------ retention

    def retention_policy(self) -> retention.Policy:
        """The configured ages. Finished runs are also kept for as long as any loaded
        rule's guards count them (cooldown, the hourly limit, max_targets.per):
        pruning a run must never let a guard pass that it would have blocked."""
        r = self.settings.retention
        keep = [r.runs, 3600.0]
        for rule in self.ruleset.rules if self.ruleset is not None else ():
            keep.append(rule.cooldown)
            if rule.max_targets is not None:
                keep.append(rule.max_targets.per)
        return retention.Policy(occurrences=r.occurrences, runs=max(keep))

    async def retention_once(self, *, now: float | None = None) -> retention.Pass:
        """One pass (skipped if another replica is pruning), then the row gauges."""
        result = await retention.prune(
            self.store,
            self.retention_policy(),
            now=now,
            beat=lambda: self.supervisor.beat("retention"),
        )
        for table, n in result.deleted.items():
            if n:
                self.metrics.retention_deleted.labels(table).inc(n)
        if any(result.deleted.values()):
            log.info("retention_pruned", deleted=result.deleted, more=result.more)
        for table, n in (await retention.count_rows(self.store)).items():
            self.metrics.state_rows.labels(table).set(n)
        return result

    async def _retention(self) -> None:
        interval = self.settings.retention.interval
        while True:
            self.supervisor.beat("retention")
            more = False
            try:
                more = (await self.retention_once()).more
            except StateUnavailable as exc:
                log.warning("retention_state_unavailable", error=str(exc))
            # Behind (a table hit its batch bound): again in a second, not an interval.
            left = 1.0 if more else interval
            while left > 0:  # beating while it waits: the interval may exceed the stall bound
                self.supervisor.beat("retention")
                await asyncio.sleep(min(left, 5.0))
                left -= 5.0
