"""Test helpers shipped with the package, so users can test their own rules.

``make_alert`` / ``make_payload`` build Alertmanager 0.25-shaped payloads;
``Harness`` runs the real engine against a real state store with a capture
pager, without an HTTP server, for runbook tests:

    async with Harness(registry, rules_yaml, clients=Clients(database=db)) as h:
        run_id = await h.fire(make_alert("PricingPackBuildSlow", {...}))
        steps = await h.steps(run_id)
        await h.resolve(...)
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remediator.engine import rules as rules_mod
from remediator.engine.engine import Engine
from remediator.metrics import Metrics
from remediator.models import ZERO_TIME, WebhookPayload, occurrences
from remediator.paging.capture import CapturePager
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.settings import Settings, from_mapping
from remediator.state.records import Approval, Run, StepRecord
from remediator.state.store import StateStore


def fingerprint_of(labels: Mapping[str, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_alert(
    alertname: str,
    labels: Mapping[str, str] | None = None,
    *,
    status: str = "firing",
    starts_at: str = "2026-11-28T00:09:04.123Z",
    ends_at: str | None = None,
    annotations: Mapping[str, str] | None = None,
    generator_url: str = "http://prometheus.example/graph?g0.expr=x",
    fingerprint: str | None = None,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **(labels or {})}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": dict(annotations or {"summary": f"{alertname} is firing"}),
        "startsAt": starts_at,
        "endsAt": ends_at or (ZERO_TIME if status == "firing" else "2026-11-28T00:30:00Z"),
        "generatorURL": generator_url,
        "fingerprint": fingerprint or fingerprint_of(all_labels),
    }


def resolved(alert: Mapping[str, Any], ends_at: str = "2026-11-28T00:30:00Z") -> dict[str, Any]:
    return {**alert, "status": "resolved", "endsAt": ends_at}


def make_payload(
    *alerts: Mapping[str, Any], receiver: str = "remediator", truncated: int = 0
) -> dict[str, Any]:
    alerts_l = [dict(a) for a in alerts]
    names = {a["labels"].get("alertname", "") for a in alerts_l}
    group = {"alertname": names.pop()} if len(names) == 1 else {}
    status = (
        "resolved" if alerts_l and all(a["status"] == "resolved" for a in alerts_l) else "firing"
    )
    return {
        "receiver": receiver,
        "status": status,
        "alerts": alerts_l,
        "groupLabels": group,
        "commonLabels": dict(group),
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": truncated,
    }


class Harness:
    """The real engine on a real store, driven directly (no HTTP, no workers)."""

    def __init__(
        self,
        registry: Registry,
        rules_yaml: str,
        *,
        clients: Clients | None = None,
        state_url: str | None = None,
        settings: Mapping[str, Any] | None = None,
        pager: CapturePager | None = None,
        owner: str = "harness",
    ) -> None:
        self.owner = owner
        self._tmp = tempfile.TemporaryDirectory()
        self.rules_path = Path(self._tmp.name) / "rules.yaml"
        self.rules_path.write_text(rules_yaml)
        self.state_url = state_url or f"sqlite:///{self._tmp.name}/state.db"
        cfg = {
            "mode": "live",
            "rules": str(self.rules_path),
            "state": self.state_url,
            **(settings or {}),
        }
        self.settings: Settings = from_mapping(cfg, env={})
        self.registry = registry
        self.metrics = Metrics()
        self.pager = pager or CapturePager()
        self.clients = clients or Clients()

    async def __aenter__(self) -> Harness:
        ruleset, errors = rules_mod.load(self.rules_path, self.registry)
        if ruleset is None:
            raise AssertionError("invalid rules: " + "; ".join(errors))
        self.ruleset = ruleset
        self.store = await StateStore.open(self.state_url)
        self.outbox = Outbox(
            self.store,
            {self.pager.name: self.pager},
            self.metrics,
            owner=self.owner,
            max_pages_per_hour=self.settings.pagers.max_pages_per_hour,
        )
        self.engine = Engine(
            store=self.store,
            registry=self.registry,
            metrics=self.metrics,
            settings=self.settings,
            clients=self.clients,
            outbox=self.outbox,
            owner=self.owner,
            rules=lambda: self.ruleset,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.verifier.aclose()
        await self.store.close()
        self._tmp.cleanup()

    async def deliver(self, *alerts: Mapping[str, Any]) -> list[bool]:
        """Journal the payload and process every new occurrence, like a worker would."""
        payload = WebhookPayload.model_validate(make_payload(*alerts))
        fresh = await self.store.append_occurrences(occurrences(payload, time.time()))
        while rows := await self.store.claim_occurrences(self.owner, 10, 30.0):
            for occ in rows:
                await self.engine.process(occ)
                await self.store.finish_occurrence(occ["id"], self.owner)
        await self.flush_pages()
        await self.wake_waits()
        return fresh

    async def wake_waits(self, horizon: float = 10.0) -> None:
        """Go on with runs parked in a wait (a build Job) as the daemon's maintenance
        would, as long as the next wake-up is within ``horizon`` seconds."""
        while True:
            due = await self.store.next_wake_up()
            if due is None or due - time.time() > horizon:
                return
            await asyncio.sleep(max(0.0, due - time.time()))
            await self.maintenance()

    async def maintenance(self) -> None:
        """Run what the daemon's maintenance loop runs (approvals, deferred undos)."""
        await self.store.requeue_expired_claims()
        await self.engine.maintain()
        await self.flush_pages()

    async def flush_pages(self) -> None:
        while await self.outbox.deliver_due():
            pass

    async def runs(self) -> list[Run]:
        return await self.store.list_runs(1000)

    async def steps(self, run_id: str, phase: str | None = None) -> list[StepRecord]:
        return await self.store.steps_for_run(run_id, phase)

    async def approvals(self, run_id: str) -> list[Approval]:
        return await self.store.approvals_for_run(run_id)

    async def approve(self, approval_id: int, who: str = "test-operator") -> None:
        d = await self.engine.decide(approval_id, "approved", who)
        assert d.status == "ok", d
        await self.maintenance()
        await self.wake_waits()

    async def reject(self, approval_id: int, who: str = "test-operator") -> None:
        d = await self.engine.decide(approval_id, "rejected", who)
        assert d.status == "ok", d
