"""The operator's views of the state store: the audit trail and the pending approvals.

Read-only queries shared by the CLI (``remediator actions`` / ``approvals``) and the
operator API (``GET /api/v1/actions`` / ``/api/v1/approvals``), so both show the same:
each step with what a human decided about it, and the runs a guard blocked before
any step (they have no step rows, and would otherwise be invisible).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from remediator.state.records import Run
from remediator.state.store import StateStore
from remediator.state.store_base import decode_run, loads

# An approval's state as the audit trail says it (the step row stays "awaiting_approval").
_APPROVAL_STATUS = {
    "pending": "awaiting approval",
    "approved": "approved",
    "executing": "approved, executing",
    "executed": "approved, executed",
    "failed": "approved, failed",
    "rejected": "rejected",
    "expired": "approval expired",
}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail: a step, or a run a guard blocked (``phase`` "run")."""

    started_at: float
    run_id: str
    rule: str
    runbook: str
    alertname: str
    fingerprint: str
    phase: str
    seq: int
    name: str
    kind: str
    mutates: bool
    approval: str
    state: str
    outcome: str | None
    status: str  # what a human reads: the outcome, or the approval's decision
    detail: str  # the reason, or the result's summary
    reason: str | None
    rendered: str
    attempts: int
    finished_at: float | None
    run_mode: str
    approval_id: int | None
    decided_by: str | None
    result: Any = None
    changes: Any = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PendingApproval:
    id: int
    run_id: str
    runbook: str
    rule: str
    alertname: str
    step: str
    rendered: str  # the call it would make
    who: str  # who may decide it
    requested_at: float
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_STEPS = (
    "SELECT s.*, r.rule, r.runbook, r.alertname, r.fingerprint, r.mode AS run_mode,"
    " a.id AS approval_id, a.state AS approval_state, a.decided_by,"
    " d.outcome AS approved_outcome"
    " FROM steps s JOIN runs r ON r.id = s.run_id"
    " LEFT JOIN approvals a ON a.run_id = s.run_id AND a.step = s.name"
    " AND s.approval = 'approve' AND s.phase = 'fire'"
    " LEFT JOIN steps d ON a.id IS NOT NULL AND d.run_id = s.run_id AND d.name = s.name"
    " AND d.phase = 'approved'"
    " ORDER BY s.started_at DESC, s.id DESC LIMIT ?"
)
# What an executed approval's step did, from its "approved" row: a dry run or a step
# that found nothing to do ran as approved, but executed nothing.
_EXECUTED_AS = {"dry_run": "approved, planned (dry-run)", "skipped": "approved, skipped"}
# Runs a guard stopped before any step: they have no step rows of their own.
_BLOCKED = (
    "SELECT r.* FROM runs r WHERE r.outcome = 'blocked'"
    " AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id)"
    " ORDER BY r.created_at DESC LIMIT ?"
)
_PENDING = (
    "SELECT a.*, r.rule, r.runbook, r.alertname, s.rendered"
    " FROM approvals a JOIN runs r ON r.id = a.run_id"
    " LEFT JOIN steps s ON s.run_id = a.run_id AND s.name = a.step AND s.phase = 'fire'"
    " WHERE a.state = 'pending' AND a.expires_at > ? ORDER BY a.id"
)


def _step_entry(r: dict[str, Any]) -> AuditEntry:
    result = loads(r["result"])
    status = r["outcome"] or r["state"]
    decided_by = r.get("decided_by")
    if r.get("approval_state"):
        status = _APPROVAL_STATUS.get(r["approval_state"], r["approval_state"])
        if r["approval_state"] == "executed":
            status = _EXECUTED_AS.get(r.get("approved_outcome") or "", status)
        if decided_by:
            status += f" by {decided_by}"
    summary = result.get("summary") if isinstance(result, dict) else None
    detail = r["reason"] or summary or ""
    if r.get("approval_state") not in (None, "pending") and detail.startswith("approve with"):
        # The approve command is stale once decided; pasting it would only be refused.
        detail = f"approval {r.get('approval_id')} decided: see its approved row"
        if r["approval_state"] in ("rejected", "expired"):
            detail = f"approval {r.get('approval_id')} {r['approval_state']}: not run"
    return AuditEntry(
        started_at=float(r["started_at"]),
        run_id=r["run_id"],
        rule=r["rule"],
        runbook=r["runbook"],
        alertname=r["alertname"],
        fingerprint=r["fingerprint"],
        phase=r["phase"],
        seq=int(r["seq"]),
        name=r["name"],
        kind=r["kind"],
        mutates=bool(r["mutates"]),
        approval=r["approval"],
        state=r["state"],
        outcome=r["outcome"],
        status=status,
        detail=detail,
        reason=r["reason"],
        rendered=r["rendered"],
        attempts=int(r["attempts"] or 0),
        finished_at=r["finished_at"],
        run_mode=r["run_mode"],
        approval_id=r.get("approval_id"),
        decided_by=decided_by,
        result=result,
        changes=loads(r["changes"]),
    )


def _blocked_entry(run: Run) -> AuditEntry:
    detail = run.detail or ""
    return AuditEntry(
        started_at=run.created_at,
        run_id=run.id,
        rule=run.rule,
        runbook=run.runbook,
        alertname=run.alertname,
        fingerprint=run.fingerprint,
        phase="run",
        seq=0,
        name="(whole run)",
        kind="guard",
        mutates=False,
        approval="auto",
        state=run.state,
        outcome="blocked",
        status=f"blocked by {run.blocked_by or '?'}",
        detail=detail,
        reason=detail or None,
        rendered="",
        attempts=0,
        finished_at=run.finished_at,
        run_mode=run.mode,
        approval_id=None,
        decided_by=None,
    )


async def actions(store: StateStore, limit: int) -> list[AuditEntry]:
    """The newest ``limit`` entries of the audit trail, newest first."""
    async with store.backend.read() as c:
        steps = await c.fetch(_STEPS, limit)
        blocked = await c.fetch(_BLOCKED, limit)
    entries = [_step_entry(r) for r in steps] + [_blocked_entry(decode_run(r)) for r in blocked]
    entries.sort(key=lambda e: e.started_at, reverse=True)
    return entries[:limit]


async def pending_approvals(store: StateStore, who: str) -> list[PendingApproval]:
    """Approvals still waiting for a decision and not expired, oldest first."""
    async with store.backend.read() as c:
        rows = await c.fetch(_PENDING, time.time())
    return [
        PendingApproval(
            id=int(r["id"]),
            run_id=r["run_id"],
            runbook=r["runbook"],
            rule=r["rule"],
            alertname=r["alertname"],
            step=r["step"],
            rendered=r["rendered"] or "",
            who=who,
            requested_at=float(r["requested_at"]),
            expires_at=float(r["expires_at"]),
        )
        for r in rows
    ]
