"""``remediator replay``: a payload through matching and planning, nothing executed.

It reads the same step declarations the executor runs, renders each step's call,
names the guards that would apply and shows the page a human would get. It never
opens a state store or a target client, so it is safe to run anywhere.
"""

from __future__ import annotations

import time
from typing import Any

from remediator.engine import near_miss, offer, pages
from remediator.engine.rules import RuleSet
from remediator.engine.runner import safe_render
from remediator.models import WebhookPayload, occurrences
from remediator.paging import text
from remediator.runbook_api.context import PLAN_RUN_ID, AlertView, Clients, StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Step
from remediator.settings import Settings
from remediator.state.records import Run, StepOutcome, StepRecord


def plan(
    payload: WebhookPayload, ruleset: RuleSet, registry: Registry, settings: Settings
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for occ in occurrences(payload, time.time()):
        entry: dict[str, Any] = {
            "alertname": occ.alertname,
            "fingerprint": occ.fingerprint,
            "starts_at": occ.starts_at,
            "status": occ.status,
            "runs": [],
            "near_misses": [n.to_json() for n in near_miss.near_misses(ruleset, occ.labels)],
        }
        for rule in ruleset.select(occ.labels):
            runbook = registry.get(rule.runbook)
            if runbook is None:
                continue
            ctx = StepContext(
                run_id=PLAN_RUN_ID,
                rule=rule.name,
                runbook=runbook.id,
                alert=AlertView(
                    occ.alertname,
                    occ.fingerprint,
                    occ.starts_at,
                    occ.labels,
                    occ.annotations,
                    occ.generator_url,
                ),
                params=rule.params,
                mode="dry-run",
                clients=Clients(settings=settings),
            )
            steps = []
            rows: list[StepRecord] = []
            phase_steps = runbook.steps if occ.status == "firing" else ()
            for seq, step in enumerate(phase_steps):
                rendered = safe_render(step, ctx)
                would, outcome, reason = _planned(step, settings, ctx)
                steps.append(
                    {
                        "seq": seq + 1,
                        "name": step.name,
                        "phase": "fire",
                        "title": step.title,
                        "kind": step.kind,
                        "mutates": step.mutates,
                        "approval": step.approval,
                        "would": would,
                        "call": rendered,
                        "undo": step.undo is not None,
                    }
                )
                rows.append(
                    StepRecord(
                        id=0,  # never stored: the plan as the page would show it
                        run_id="replay",
                        phase="fire",
                        seq=seq,
                        name=step.name,
                        kind=step.kind,
                        mutates=step.mutates,
                        approval=step.approval,
                        state="done",
                        outcome=outcome,
                        rendered=rendered,
                        result=None,
                        changes=None,
                        reason=reason,
                        attempts=0,
                        started_at=0.0,
                        finished_at=None,
                    )
                )
            if occ.status == "resolved":
                steps = _resolve_plan(runbook, ctx)
            guards = ["kill_switch", "circuit_open", "lock_busy"]
            if rule.cooldown:
                guards.append(f"cooldown ({int(rule.cooldown)} s per target)")
            if rule.max_runs_per_hour:
                guards.append(f"rate_limit ({rule.max_runs_per_hour}/h)")
            if rule.max_targets is not None:
                guards.append(
                    f"blast_radius ({rule.max_targets.count} targets"
                    f" per {int(rule.max_targets.per)} s)"
                )
            prometheus = settings.targets.prometheus
            if prometheus is not None and prometheus.corroborate:
                guards.append("not_corroborated (Prometheus ALERTS)")
            if rule.max_duration is not None:
                guards.append(f"max_duration ({int(rule.max_duration)} s, then undone)")
            mode = "dry-run" if "dry-run" in (settings.mode, rule.mode) else "live"
            # Nothing is stored: a run as the page reads it (the rest left empty).
            run = Run.from_row(
                {
                    "id": "replay",
                    "runbook": runbook.id,
                    "alertname": occ.alertname,
                    "rule": rule.name,
                    "mode": mode,
                    "state": "running",
                    "severity": runbook.severity,
                    "fingerprint": occ.fingerprint,
                    "starts_at": occ.starts_at,
                    "target": "",
                    "alert": {"labels": occ.labels, "generator_url": occ.generator_url},
                    "params": {},
                    "received_at": occ.received_at,
                    "created_at": 0.0,
                    "updated_at": 0.0,
                }
            )
            content = pages.build(run, rows, [], runbook, settings)
            entry["runs"].append(
                {
                    "rule": rule.name,
                    "rule_source": rule.source,
                    "runbook": runbook.id,
                    "runbook_title": runbook.title,
                    "severity": runbook.severity,
                    "mode": mode,
                    "target": f"{runbook.id}:{_safe_target(runbook, occ, rule, ctx)}",
                    "guards": guards,
                    "steps": steps,
                    "page": text.body(content),
                }
            )
        out.append(entry)
    return out


def _planned(step: Step, settings: Settings, ctx: StepContext) -> tuple[str, StepOutcome, str]:
    """What the plan says a firing step would do, and its row as a run would record it:
    (would, outcome, reason)."""
    unoffered = offer.unconfigured(step, settings)
    if unoffered:
        reason = offer.NOT_CONFIGURED + ", ".join(unoffered)
        return f"not offered: needs {', '.join(unoffered)}", "skipped", reason
    lacking = offer.unconfigured_in_plan(step, settings, ctx)
    if lacking.needs:
        keys = offer.config_keys(lacking.needs)
        if lacking.corroborates:
            reason = f"not corroborated: needs {keys}; nothing after it changes"
            return reason, "skipped", reason
        reason = offer.NOT_CONFIGURED + keys
        return f"skip: {reason}", "skipped", reason
    reason = "dry-run: not executed" if step.mutates else "replay: not executed"
    if step.approval == "approve":
        return _approval_wait(step), "awaiting_approval", reason
    if step.mutates:
        return "run (live mode) / record only (dry-run)", "dry_run", reason
    return "run", "skipped", reason


def _approval_wait(step: Any) -> str:
    # A step with a withhold is offered only when the run's own reads call for it
    # (RB-01 kill_stuck: only if a statement is stuck); otherwise the engine records
    # it as not offered, and the plan must not promise an approval.
    if step.withhold is not None and step.withhold_reads_run:
        return "wait for approval, if the run's own reads find it needed"
    return "wait for approval"


def _resolve_plan(runbook: Any, ctx: StepContext) -> list[dict[str, Any]]:
    """The resolve phase as the engine runs it (engine/undo.py): the runbook's resolve
    steps first, then one undo per step that recorded a change, latest change first.

    Steps applied on approval finish after the whole firing pass, so they are undone
    before the others; which of them actually applied only the firing run can tell.
    """
    steps: list[dict[str, Any]] = [
        {
            "seq": i + 1,
            "name": s.name,
            "phase": "resolve",
            "title": s.title,
            "kind": s.kind,
            "mutates": s.mutates,
            "approval": s.approval,
            "would": "run",
            "call": safe_render(s, ctx),
            "undo": False,
        }
        for i, s in enumerate(runbook.resolve_steps)
    ]
    undoable = [s for s in reversed(runbook.steps) if s.undo is not None]
    undoable.sort(key=lambda s: s.approval != "approve")  # stable: approved ones first
    steps += [
        {
            "seq": len(steps) + i + 1,
            "name": s.name,
            "phase": "undo",
            "title": f"Undo: {s.title}",
            "kind": s.kind,
            "mutates": s.mutates,
            "approval": s.approval,
            "would": "put back what the firing run recorded, if this step applied (once)",
            "call": safe_render(s, ctx, {}),  # the undo's own call, as its audit row shows
            "undo": False,
        }
        for i, s in enumerate(undoable)
    ]
    return steps


def _safe_target(runbook: Any, occ: Any, rule: Any, ctx: StepContext) -> str:
    try:
        return str(runbook.target_for(occ.labels, rule.params, ctx.clients))
    except Exception as exc:
        return f"(invalid: {exc})"


def format_timeline(entries: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for e in entries:
        lines.append(
            f"● {e['alertname']} [{e['status']}] fingerprint={e['fingerprint']}"
            f" startsAt={e['starts_at']}"
        )
        if not e["runs"]:
            lines.append("    no rule matches: nothing would run")
        for miss in e.get("near_misses", ()):
            lines.append(f"    rule {miss['rule']} ({miss['source']}) did not match:")
            lines.extend(f"      {why}" for why in miss["failed"])
        for r in e["runs"]:
            lines.append(
                f"  ├─ rule {r['rule']} ({r['rule_source']}) -> {r['runbook']}"
                f" {r['runbook_title']} [{r['severity']}, mode {r['mode']}]"
            )
            lines.append(f"  │  target {r['target']}; guards: {', '.join(r['guards'])}")
            for s in r["steps"]:
                flag = (
                    "undo"  # run at resolve without asking, whatever its step's approval
                    if s.get("phase") == "undo"
                    else "approve"
                    if s["approval"] == "approve"
                    else ("mutates" if s["mutates"] else "reads")
                )
                lines.append(
                    f"  │  {s['seq']:>2}. [{s['kind']}/{flag}] {s['title']} -> {s['would']}"
                )
                for call_line in str(s["call"]).splitlines():
                    lines.append(f"  │        {call_line}")
            lines.append("  └─ page:")
            for p in r["page"].splitlines():
                lines.append(f"       {p}")
    return "\n".join(lines)
