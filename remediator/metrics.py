"""The daemon's own Prometheus metrics, against an injectable registry.

Names are part of the external contract (README.md): dashboards and alert rules
depend on them. Tests build ``Metrics(CollectorRegistry())`` and read samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from remediator import __version__

# The label values the daemon can produce (README.md "Metrics").
RUN_OUTCOMES = ("mitigated", "partial", "failed", "planned", "blocked")  # engine/outcome.py
ACTION_OUTCOMES = ("applied", "dry_run", "skipped", "failed", "awaiting_approval", "rolled_back")
GUARDS = (
    "cooldown",
    "rate_limit",
    "circuit_open",
    "kill_switch",
    "lock_busy",
    "blast_radius",
    "not_corroborated",
)
LOOPS = ("dispatch", "dispatch_p0", "finisher", "maintenance", "heartbeat", "outbox", "retention")
STATE_TABLES = ("occurrences", "runs", "steps", "approvals", "outbox")
PAGE_EVENTS = ("trigger", "resolve")
PAGE_OUTCOMES = ("delivered", "retry", "failed", "rejected")

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = "remediator_"
        self.webhooks_received = Counter(
            p + "webhooks_received", "Webhook requests by HTTP status code", ["code"], registry=r
        )
        self.alerts_received = Counter(
            p + "alerts_received",
            "Alert occurrences received",
            ["alertname", "status"],
            registry=r,
        )
        self.alerts_deduplicated = Counter(
            p + "alerts_deduplicated", "Occurrences already in the journal", registry=r
        )
        self.truncated_alerts = Counter(
            p + "truncated_alerts", "Alerts Alertmanager left out (truncatedAlerts)", registry=r
        )
        self.runbook_runs = Counter(
            p + "runbook_runs", "Runbook runs by outcome", ["runbook", "outcome"], registry=r
        )
        self.actions = Counter(
            p + "actions",
            "Runbook steps by outcome",
            ["runbook", "action", "outcome"],
            registry=r,
        )
        self.action_duration = Histogram(
            p + "action_duration_seconds",
            "Duration of runbook steps",
            ["runbook", "action"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_mitigation = Histogram(
            p + "time_to_mitigation_seconds",
            "From webhook receipt to the first mitigation committed",
            ["runbook"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.verifications = Counter(
            p + "verifications",
            "Mitigations checked against Prometheus, by outcome (held, failed, no_data)",
            ["runbook", "outcome"],
            registry=r,
        )
        self.guard_blocks = Counter(
            p + "guard_blocks", "Runs or steps blocked by a guard", ["guard"], registry=r
        )
        self.pages = Counter(
            p + "pages", "Page deliveries", ["pager", "event", "outcome"], registry=r
        )
        self.approvals_pending = Gauge(
            p + "approvals_pending", "Approval requests waiting for a human", registry=r
        )
        self.queue_depth = Gauge(
            p + "queue_depth", "Journaled occurrences not yet processed", registry=r
        )
        self.paused = Gauge(p + "paused", "1 while the kill switch is on", registry=r)
        self.circuit_state = Gauge(
            p + "circuit_state",
            "Circuit per runbook: 0 closed, 1 half-open, 2 open",
            ["runbook"],
            registry=r,
        )
        self.rule_reloads = Counter(
            p + "rule_reloads", "Rule reloads by outcome", ["outcome"], registry=r
        )
        self.auth_failures = Counter(
            p + "auth_failures",
            "Requests refused 401 for missing or wrong credentials, by realm",
            ["realm"],
            registry=r,
        )
        for realm in ("webhook", "operator"):
            self.auth_failures.labels(realm)
        self.journal_batch_size = Histogram(
            p + "journal_batch_size",
            "Occurrences written per journal commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.loop_restarts = Counter(
            p + "loop_restarts",
            "Background loops that died and were restarted by the supervisor",
            ["loop"],
            registry=r,
        )
        for loop in LOOPS:
            self.loop_restarts.labels(loop)
        self.state_rows = Gauge(
            p + "state_rows", "Rows in the state store, by table", ["table"], registry=r
        )
        self.retention_deleted = Counter(
            p + "retention_deleted",
            "State store rows pruned by retention, by table",
            ["table"],
            registry=r,
        )
        for table in STATE_TABLES:
            self.retention_deleted.labels(table)
        self.pages_folded = Counter(
            p + "pages_folded",
            "Pages folded into a summary incident instead of opening their own",
            ["pager"],
            registry=r,
        )
        self.build_info = Info(p + "build", "Build information", registry=r)
        self.build_info.info({"version": __version__})

    def prime(self, runbooks: Mapping[str, Iterable[str]], pagers: Iterable[str] = ()) -> None:
        """Create, at zero, the series of every known runbook, step, guard and pager.

        rate(), increase() and changes() count from a series' second sample: a labelled
        child created by its first event starts at 1, and that event is never seen (a
        runbook's first time to mitigation would be NaN on the dashboards, and the
        first failed step or rule reload would never fire an alert). ``runbooks`` maps
        runbook id -> its step names.
        """
        for runbook, steps in runbooks.items():
            self.time_to_mitigation.labels(runbook)
            for verified in ("held", "failed", "no_data"):
                self.verifications.labels(runbook, verified)
            for outcome in RUN_OUTCOMES:
                self.runbook_runs.labels(runbook, outcome)
            for step in steps:
                self.action_duration.labels(runbook, step)
                for outcome in ACTION_OUTCOMES:
                    self.actions.labels(runbook, step, outcome)
        for guard in GUARDS:
            self.guard_blocks.labels(guard)
        for outcome in ("success", "failure"):
            self.rule_reloads.labels(outcome)
        for pager in pagers:
            self.pages_folded.labels(pager)
            for event in PAGE_EVENTS:
                for outcome in PAGE_OUTCOMES:
                    self.pages.labels(pager, event, outcome)
