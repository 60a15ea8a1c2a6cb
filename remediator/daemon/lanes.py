"""The daemon's loops: the dispatch lanes, the finisher, the lease heartbeat,
maintenance and retention. A mixin of ``Daemon``, which opens what they use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from remediator import logs
from remediator.cancelling import describe, finish_or_cancel
from remediator.engine.engine import Engine
from remediator.engine.rules import RuleSet
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.runbook_api.registry import Registry
from remediator.settings import Settings
from remediator.state import retention
from remediator.state.store import StateStore
from remediator.supervisor import Supervisor

log = logs.get("remediator.daemon")

SHUTDOWN_GRACE = 5.0  # seconds in-flight occurrences get on SIGTERM


class Lanes:
    """The loops ``Daemon.start`` spawns under its supervisor."""

    settings: Settings
    metrics: Metrics
    registry: Registry
    owner: str
    ruleset: RuleSet | None
    supervisor: Supervisor
    store: StateStore
    engine: Engine
    _wakes: dict[str, asyncio.Event]
    _maint_wake: asyncio.Event
    _finished: asyncio.Queue[int]
    _p0_names: frozenset[str]
    # Occurrences being processed, across lanes: shutdown gives them SHUTDOWN_GRACE.
    _in_flight: set[asyncio.Task[None]]

    # ---------------------------------------------------------------- gauges

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
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if not rows:
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.engine.poll_interval)

    async def drain_in_flight(self) -> None:
        """Shutting down: let in-flight occurrences finish for a moment; a run cut
        short keeps its lease and is resumed by this or another replica."""
        stuck = await finish_or_cancel(
            set(self._in_flight), grace=SHUTDOWN_GRACE, within=SHUTDOWN_GRACE
        )
        if stuck:
            log.error("occurrences_would_not_stop", tasks=describe(stuck))

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
