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
import os
import socket
import time
import uuid
from contextlib import suppress
from typing import Any

from remediator import commandline, logs
from remediator.background import Background
from remediator.cancelling import cancel_and_wait, describe
from remediator.daemon.heap import freeze_startup_heap
from remediator.daemon.lanes import SHUTDOWN_GRACE, Lanes
from remediator.daemon.pagers import (
    DEFAULT_SEVERITIES,
    build_pagers,
    secret_values,
    severity_routes,
)
from remediator.engine import rules as rules_mod
from remediator.engine.engine import Decision, Engine
from remediator.engine.rules import RuleSet
from remediator.engine.verify import warnings as verify_warnings
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.paging.base import PageContent, Pager
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry, load_entry_points
from remediator.runbooks import yaml_runbooks
from remediator.settings import Settings
from remediator.state.journal import JournalWriter
from remediator.state.store import StateStore
from remediator.supervisor import Supervisor

# Callers import these from here (the package), whichever module holds them.
__all__ = [
    "DEFAULT_SEVERITIES",
    "SHUTDOWN_GRACE",
    "Daemon",
    "build_pagers",
    "freeze_startup_heap",
    "secret_values",
    "severity_routes",
]

log = logs.get("remediator.daemon")


class Daemon(Lanes):
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
        # The YAML runbooks join it in start(), read with the rules (reload_rules).
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
        self._finished: asyncio.Queue[int] = asyncio.Queue()  # processed occurrence ids
        self._in_flight: set[asyncio.Task[None]] = set()
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
        processed ones are marked done before the store closes. Every phase is
        bounded, so SIGTERM ends the process even when a task ignores cancellation."""
        with suppress(Exception):
            await self.journal.close()
        await self.supervisor.stop(["dispatch", "dispatch_p0"])
        await self.drain_in_flight()
        try:
            ids = []
            while not self._finished.empty():
                ids.append(self._finished.get_nowait())
            await self.store.finish_occurrences(ids, self.owner)
        except Exception as exc:  # their claims expire and they are processed again
            log.warning("stop_finish_failed", error=str(exc))
        await self.supervisor.stop()
        await self.background.stop(SHUTDOWN_GRACE)
        stuck = await cancel_and_wait(self._tasks, within=SHUTDOWN_GRACE)
        if stuck:
            log.error("tasks_would_not_stop", tasks=describe(stuck))
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
        """Reload the YAML runbooks and the rules; on any error keep both as they were."""
        registry, errors = self._reloaded_runbooks()
        ruleset = None
        if not errors:
            ruleset, errors = rules_mod.load(self.settings.rules, registry)
        if ruleset is None:
            self.metrics.rule_reloads.labels("failure").inc()
            self.rule_errors = errors
            log.error("rules_reload_failed", errors=errors, kept=len(self.ruleset or ()))
            return False, errors
        if registry is not self.registry:
            self.registry.replace_with(registry)
        self.ruleset = ruleset
        self._p0_names = self._find_p0_names()
        self.rule_errors = []
        self.metrics.rule_reloads.labels("success").inc()
        log.info("rules_loaded", rules=len(ruleset), files=ruleset.sources)
        for warning in verify_warnings(ruleset, self.settings.targets.prometheus is not None):
            log.warning("rule_warning", detail=warning)
        return True, len(ruleset)

    def _reloaded_runbooks(self) -> tuple[Registry, list[str]]:
        """The runbooks written in Python as they are, with the YAML ones read anew.
        A run under way goes on with the new definition from its next step."""
        if not self.settings.runbooks:
            return self.registry, []
        fresh = Registry()
        for runbook in self.registry:
            if not runbook.source:
                fresh.register(runbook)
        return fresh, yaml_runbooks.load(self.settings.runbooks, fresh)

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
