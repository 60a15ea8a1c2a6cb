"""Turn a run's recorded steps into page content.

The page is built from the audit rows, not from what the code meant to do, so
it says exactly what happened: done (with outcomes), skipped (and why), and
what is left for the human with the exact command to type.
"""

from __future__ import annotations

from collections.abc import Sequence

from remediator import commandline
from remediator.engine import offer
from remediator.engine.sources import page_extras
from remediator.paging.base import PageContent
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings
from remediator.state.records import Approval, Run, StepRecord

# The words every runbook uses for work it leaves to a human (RB-01 "unmark it by
# hand", RB-02 "replay the DLQ by hand"); at resolve those must reach one.
HAND_WORK = "by hand"
RESOLVE_PHASES = ("resolve", "undo")


def _from_resolve(item: str) -> bool:
    return any(f" [{phase}]" in item.split(":", 1)[0] for phase in RESOLVE_PHASES)


def dedup_key(run_id: str) -> str:
    return f"remediator/{run_id}"


def _title(runbook: Runbook | None, name: str) -> str:
    if runbook is None:
        return name
    try:
        return runbook.step(name).title
    except KeyError:
        return name


def approval_details(
    steps: Sequence[StepRecord],
    approvals: Sequence[Approval],
    runbook: Runbook | None,
    settings: Settings,
) -> list[dict[str, object]]:
    """Each approval of the run as data, for pagers that offer buttons (Slack): what
    it would run, its state, the outcome of its step once it ran, and the commands
    that decide it, as they paste (with ``--config`` or ``--url``)."""
    asked = {s.name: s for s in steps if s.phase == "fire"}
    ran = {s.name: s for s in steps if s.phase == "approved" and s.state == "done"}
    result: list[dict[str, object]] = []
    for a in approvals:
        done = ran.get(a.step)
        outcome = None
        if done is not None:
            summary = done.summary or done.reason
            outcome = f"{done.outcome}" + (f": {summary}" if summary else "")
        result.append(
            {
                "id": a.id,
                "step": a.step,
                "title": _title(runbook, a.step),
                "call": call.rendered if (call := asked.get(a.step)) else "",
                "state": a.state,
                "decided_by": a.decided_by,
                "decided_at": a.decided_at,
                "expires_at": a.expires_at,
                "outcome": outcome,
                "approve": commandline.command(settings, f"approve {a.id}"),
                "reject": commandline.command(settings, f"reject {a.id}"),
            }
        )
    return result


def build(
    run: Run,
    steps: Sequence[StepRecord],
    approvals: Sequence[Approval],
    runbook: Runbook | None,
    settings: Settings,
    *,
    headline: str | None = None,
    at_resolve: bool = False,
) -> PageContent:
    """``at_resolve``: the resolve's page, whose ``left_for_human`` holds only what the
    resolve itself left (an undo that failed or was kept, a resolve action the runbook
    leaves to a human); the fire's leftovers (on the trigger's page already, its
    approvals now expired) are listed with the skipped."""
    done: list[str] = []
    skipped: list[str] = []
    left: list[str] = []
    by_step = {a.step: a for a in approvals}
    for s in steps:
        title = _title(runbook, s.name)
        outcome = s.outcome
        summary = s.summary
        phase = "" if s.phase == "fire" else f" [{s.phase}]"
        if s.phase == "verify":  # did the mitigation hold (engine/verify.py)
            words = f"Verification {summary or s.reason or 'pending'}"
            # At resolve the check is history, listed with what was done: not under
            # "Skipped" with the fire's leftovers, which would read as never checked.
            unmet = outcome in ("failed", "skipped") and not at_resolve
            (left if unmet else done).append(words)
            continue
        said = str(summary or s.reason or "")
        if s.phase in RESOLVE_PHASES and outcome != "failed" and HAND_WORK in said:
            left.append(f"{title}{phase}: {said}")  # the runbook's "... by hand"
            continue
        unoffered = offer.page_line(title, s)
        if unoffered is not None:
            left.append(unoffered)
        elif outcome in ("applied", "rolled_back"):
            done.append(f"{title}{phase}: {summary or outcome}")
        elif outcome == "skipped":
            skipped.append(f"{title}{phase}: {s.reason}")
        elif outcome == "dry_run":
            skipped.append(f"{title}{phase}: {s.reason}; would run: {s.rendered}")
        elif outcome == "awaiting_approval":
            a = by_step.get(s.name)
            state = a.state if a else "pending"
            if a is not None and state == "pending":
                approve = commandline.command(settings, f"approve {a.id}")
                reject = commandline.command(settings, f"reject {a.id}")
                left.append(
                    f"{title}: approve with `{approve}` (or reject with `{reject}`);"
                    f" would run: {s.rendered}"
                )
            elif a is not None:
                left.append(f"{title}: approval {a.id} {state}")
        elif outcome == "failed":
            left.append(f"{title}{phase} FAILED: {s.reason}; do by hand: {s.rendered}")
    if at_resolve:  # the fire's leftovers stay on record, as what happened
        skipped += [item for item in left if not _from_resolve(item)]
        left = [item for item in left if _from_resolve(item)]
    if run.blocked_by:
        skipped.append(
            f"whole run: blocked by guard {run.blocked_by} ({run.detail or ''})".rstrip(" ()")
        )
    links: list[tuple[str, str]] = []
    anchor = runbook.anchor if runbook else ""
    if settings.links.runbooks:
        links.append(
            (
                f"Runbook {run.runbook}",
                settings.links.runbooks + (f"#{anchor}" if anchor else ""),
            )
        )
    if settings.links.grafana:
        links.append(("Grafana: remediator", settings.links.grafana))
    if run.generator_url:
        links.append(("Alert source", run.generator_url))
    source_links, values = page_extras(run.alert)
    links += source_links
    mode = run.mode
    head = headline or (runbook.title if runbook else run.runbook)
    title = f"[{run.runbook}] {run.alertname}: {head}"
    labels = run.labels
    # A P0 whose runbook changed something gets its own incident even past the
    # pager's hourly budget. A read (a diagnosis, applied in dry-run too) is not acting.
    acted = any(s.outcome == "applied" and s.mutates for s in steps)
    return PageContent(
        dedup_key=dedup_key(run.id),
        severity=run.severity,
        title=title,
        alertname=run.alertname,
        runbook=run.runbook,
        rule=run.rule,
        mode=mode,
        done=tuple(done),
        skipped=tuple(skipped),
        left_for_human=tuple(left),
        links=tuple(links),
        labels={k: v[:256] for k, v in labels.items()},
        values=values,
        details={
            "run_id": run.id,
            "fingerprint": run.fingerprint,
            "starts_at": run.starts_at,
            "approvals": approval_details(steps, approvals, runbook, settings),
            # Commands a pager may print besides those in the text, as they paste.
            "commands": {
                "approvals": commandline.command(settings, "approvals"),
                "resume": commandline.command(settings, "resume"),
            },
        },
        never_fold=run.severity == "P0" and acted,
    )
