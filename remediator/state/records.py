"""Typed records of what the store holds: a run, a step of it, an approval, a page.

The store reads rows as dicts (one per backend driver); these records are what it
hands out instead, one field per column of ``SELECT *`` with its JSON columns
decoded, so a caller reads ``run.fingerprint`` and mypy knows its type. The
``Literal`` types name every value a state or outcome column takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

from remediator.state.backend import Row

RunState = Literal["running", "waiting", "parked", "undoing", "done"]
RunOutcome = Literal["mitigated", "partial", "failed", "planned", "blocked"]
RunMode = Literal["live", "dry-run"]
RunSeverity = Literal["P0", "P1", "P2", "P3"]
# A resolve (or max_duration, or a failed verification) asks for the undo; it is
# done once the run's changes are put back.
UndoState = Literal["requested", "done"]
UndoReason = Literal["resolved", "max_duration", "verify_failed"]
RUN_OUTCOMES: tuple[RunOutcome, ...] = ("mitigated", "partial", "failed", "planned", "blocked")
StepState = Literal["started", "waiting", "deferred", "done"]
StepOutcome = Literal["applied", "dry_run", "skipped", "failed", "awaiting_approval", "rolled_back"]
ApprovalState = Literal[
    "pending", "approved", "rejected", "expired", "executing", "executed", "failed"
]


class ColumnAccess:
    """``record["column"]`` reads the field of that name, as the dict rows these
    records replace did; for tests and views that name columns by string. Code
    that knows the column reads the attribute (typed)."""

    __slots__ = ()

    def __getitem__(self, column: str) -> object:
        try:
            return getattr(self, column)
        except AttributeError:
            raise KeyError(column) from None

    def get(self, column: str, default: object = None) -> object:
        return getattr(self, column, default)


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Approval(ColumnAccess):
    """One row of ``approvals``: a step of a run waiting for (or past) a human."""

    id: int
    run_id: str
    step: str
    state: ApprovalState
    requested_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    slack_nonce: str | None
    slack_nonce_used_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> Approval:
        return cls(
            id=int(row["id"]),
            run_id=str(row["run_id"]),
            step=str(row["step"]),
            state=row["state"],
            requested_at=float(row["requested_at"]),
            expires_at=float(row["expires_at"]),
            decided_by=_opt_str(row.get("decided_by")),
            decided_at=_opt_float(row.get("decided_at")),
            slack_nonce=_opt_str(row.get("slack_nonce")),
            slack_nonce_used_at=_opt_float(row.get("slack_nonce_used_at")),
        )

    def to_json(self) -> dict[str, object]:
        """The row as the store holds it, column by column (JSON output, Slack)."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "step": self.step,
            "state": self.state,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "slack_nonce": self.slack_nonce,
            "slack_nonce_used_at": self.slack_nonce_used_at,
        }


JsonObject = dict[str, object]


def _opt_json(value: object) -> JsonObject | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class StepRecord(ColumnAccess):
    """One row of ``steps``: what one step of a run did (the audit trail), with
    ``result`` and ``changes`` decoded from their JSON text."""

    id: int
    run_id: str
    phase: str  # fire | approved | resolve | undo | verify
    seq: int
    name: str
    kind: str
    mutates: bool
    approval: str
    state: StepState
    outcome: StepOutcome | None
    rendered: str
    result: JsonObject | None
    changes: JsonObject | None
    reason: str | None
    attempts: int
    started_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> StepRecord:
        return cls(
            id=int(row["id"]),
            run_id=str(row["run_id"]),
            phase=str(row["phase"]),
            seq=int(row["seq"]),
            name=str(row["name"]),
            kind=str(row["kind"]),
            mutates=bool(row["mutates"]),
            approval=str(row["approval"]),
            state=row["state"],
            outcome=row.get("outcome"),
            rendered=str(row["rendered"]),
            result=_opt_json(row.get("result")),
            changes=_opt_json(row.get("changes")),
            reason=_opt_str(row.get("reason")),
            attempts=int(row.get("attempts") or 0),
            started_at=float(row["started_at"]),
            finished_at=_opt_float(row.get("finished_at")),
        )

    @property
    def summary(self) -> object:
        """The ``summary`` of its result, if it has one."""
        return (self.result or {}).get("summary")

    @property
    def data(self) -> JsonObject:
        """The ``data`` of its result ({} without one)."""
        data = (self.result or {}).get("data")
        return data if isinstance(data, dict) else {}

    def to_row(self) -> Row:
        """The step as a row to write back (``record_step``), column by column."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _text_map(value: object) -> Mapping[str, str]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Run(ColumnAccess):
    """One row of ``runs``: one rule acting on one alert (rule, fingerprint,
    starts_at), with ``alert`` and ``params`` decoded from their JSON text.

    Frozen: a caller that changes a run writes the change (``update_run``) and, if
    it goes on with the run, passes on ``dataclasses.replace(run, ...)``."""

    id: str
    rule: str
    runbook: str
    fingerprint: str
    starts_at: str
    alertname: str
    target: str
    mode: RunMode
    state: RunState
    outcome: RunOutcome | None
    blocked_by: str | None  # the guard that stopped it
    detail: str | None  # why it was blocked or parked
    # labels, annotations, generator_url; a Grafana alert's source and details too
    alert: JsonObject
    params: JsonObject  # the rule's params, as JSON (the runbook's model validates them)
    severity: RunSeverity
    received_at: float
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None
    lease_until: float | None
    mitigated_at: float | None
    undo_state: UndoState | None
    resolved_at: float | None
    escalated_at: float | None
    retry_at: float | None  # a parked run's wake-up (None: parked by the kill switch)
    undo_reason: UndoReason | None
    verify_at: float | None  # the next verification poll

    @classmethod
    def from_row(cls, row: Row) -> Run:
        """A run from its row, JSON columns already decoded; the columns an insert
        leaves empty may be missing."""
        return cls(
            id=str(row["id"]),
            rule=str(row["rule"]),
            runbook=str(row["runbook"]),
            fingerprint=str(row["fingerprint"]),
            starts_at=str(row["starts_at"]),
            alertname=str(row["alertname"]),
            target=str(row["target"]),
            mode=row["mode"],
            state=row["state"],
            outcome=row.get("outcome"),
            blocked_by=_opt_str(row.get("blocked_by")),
            detail=_opt_str(row.get("detail")),
            alert=_opt_json(row["alert"]) or {},
            params=_opt_json(row["params"]) or {},
            severity=row["severity"],
            received_at=float(row["received_at"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            finished_at=_opt_float(row.get("finished_at")),
            owner=_opt_str(row.get("owner")),
            lease_until=_opt_float(row.get("lease_until")),
            mitigated_at=_opt_float(row.get("mitigated_at")),
            undo_state=row.get("undo_state"),
            resolved_at=_opt_float(row.get("resolved_at")),
            escalated_at=_opt_float(row.get("escalated_at")),
            retry_at=_opt_float(row.get("retry_at")),
            undo_reason=row.get("undo_reason"),
            verify_at=_opt_float(row.get("verify_at")),
        )

    @property
    def labels(self) -> Mapping[str, str]:
        """The alert's labels ({} if it had none)."""
        return _text_map(self.alert.get("labels"))

    @property
    def annotations(self) -> Mapping[str, str]:
        return _text_map(self.alert.get("annotations"))

    @property
    def generator_url(self) -> str:
        return str(self.alert.get("generator_url") or "")

    @property
    def source(self) -> str:
        """Who evaluated the alert: "alertmanager" (runs stored before say nothing)
        or "grafana"."""
        return str(self.alert.get("source", "alertmanager"))


PageState = Literal["pending", "sent", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class QueuedPage(ColumnAccess):
    """One row of ``outbox``: a page to deliver, with its event decoded from JSON."""

    id: int
    idem: str
    pager: str
    action: str
    dedup_key: str
    event: JsonObject | None  # None: the stored text is not a JSON object
    state: PageState
    attempts: int
    next_attempt_at: float
    claimed_by: str | None
    claim_until: float | None
    last_error: str | None
    created_at: float
    sent_at: float | None
    incident: str | None  # a fold's summary role (folds.SUMMARY_SENDS), if any
    folded_into: str | None
    topic: str | None

    @classmethod
    def from_row(cls, row: Row, event: object) -> QueuedPage:
        return cls(
            id=int(row["id"]),
            idem=str(row["idem"]),
            pager=str(row["pager"]),
            action=str(row["action"]),
            dedup_key=str(row["dedup_key"]),
            event=_opt_json(event),
            state=row["state"],
            attempts=int(row["attempts"]),
            next_attempt_at=float(row["next_attempt_at"]),
            claimed_by=_opt_str(row.get("claimed_by")),
            claim_until=_opt_float(row.get("claim_until")),
            last_error=_opt_str(row.get("last_error")),
            created_at=float(row["created_at"]),
            sent_at=_opt_float(row.get("sent_at")),
            incident=_opt_str(row.get("incident")),
            folded_into=_opt_str(row.get("folded_into")),
            topic=_opt_str(row.get("topic")),
        )
