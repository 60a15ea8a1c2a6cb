"""Offer an approval only when approving it can work.

An approval step names the clients it acts through (``Step.needs``). When one of
them is not configured, approving could only fail, and the on-call engineer would
learn that at the worst moment. So no approval row is created: the step is
recorded as skipped with the reason ``not configured: targets.aws`` (every such
reason starts with ``NOT_CONFIGURED``, so run outcomes can tell it from a failure),
and the page lists it as not offered, naming what is missing and the call a human
can make by hand. Dry-run changes nothing here: a configured step is still offered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from remediator.engine.runner import safe_render
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Need, PlannedNeeds, Step
from remediator.settings import Settings
from remediator.state.backend import Row
from remediator.state.records import StepRecord

NOT_CONFIGURED = "not configured: "

# The config key a user sets to give the engine each client.
CONFIG_KEYS: Mapping[Need, str] = {
    "database": "targets.database",
    "cache": "targets.redis",
    "kubernetes": "targets.kubernetes",
    "aws": "targets.aws",
    "http": "targets.http",
}


def missing(step: Step, clients: Clients) -> tuple[str, ...]:
    """The config keys of the clients ``step`` needs that are not configured."""
    return tuple(CONFIG_KEYS[n] for n in step.needs if getattr(clients, n) is None)


def _configured(settings: Settings) -> Mapping[Need, bool]:
    """Which clients ``settings`` gives, read as remediator/daemon/clients.py opens them."""
    t = settings.targets
    return {
        "database": t.database is not None,
        "cache": t.redis is not None,
        "kubernetes": t.kubernetes.mode != "off",
        "aws": t.aws is not None,
        "http": bool(t.http.providers or t.http.app_url),
    }


def unconfigured(step: Step, settings: Settings) -> tuple[str, ...]:
    """For a plan made without clients (``replay``): the config keys an approval step
    needs that ``settings`` leaves unset."""
    if step.approval != "approve":
        return ()
    configured = _configured(settings)
    return tuple(CONFIG_KEYS[n] for n in step.needs if not configured[n])


def unconfigured_in_plan(step: Step, settings: Settings, ctx: StepContext) -> PlannedNeeds:
    """For ``replay``: the config keys of the clients any step's action would act through
    that ``settings`` leaves unset (the run records such a step as ``not configured``,
    or, for a corroborating read, as not corroborated)."""
    planned = step.plan_needs(ctx) if step.plan_needs is not None else PlannedNeeds(step.needs)
    configured = _configured(settings)
    missing = tuple(n for n in planned.needs if not configured[n])
    return PlannedNeeds(missing, planned.corroborates)


def config_keys(needs: tuple[Need, ...]) -> str:
    return ", ".join(CONFIG_KEYS[n] for n in needs)


def not_offered(step: Step, ctx: StepContext, seq: int) -> Row | None:
    """The skipped step row for an approval that cannot be offered, else None."""
    if step.approval != "approve":
        return None
    keys = missing(step, ctx.clients)
    if not keys:
        return None
    now = time.time()
    return {
        "run_id": ctx.run_id,
        "phase": "fire",
        "seq": seq,
        "name": step.name,
        "kind": step.kind,
        "mutates": step.mutates,
        "approval": step.approval,
        "state": "done",
        "outcome": "skipped",
        "rendered": safe_render(step, ctx),
        "result": None,
        "changes": None,
        "reason": NOT_CONFIGURED + ", ".join(keys),
        "attempts": 0,
        "started_at": now,
        "finished_at": now,
    }


def page_line(title: str, row: StepRecord) -> str | None:
    """The page's line for a step row that was not offered, else None."""
    reason = row.reason or ""
    if row.outcome != "skipped" or not reason.startswith(NOT_CONFIGURED):
        return None
    if row.approval != "approve":
        return None
    line = f"Not offered: {title}: needs {reason.removeprefix(NOT_CONFIGURED)}"
    if row.rendered:
        line += f"; by hand if needed: {row.rendered}"
    return line
