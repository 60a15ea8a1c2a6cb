"""Run every check, bounded in time, and build the ``Report``.

The checks run concurrently, each under its own time bound, so one silent peer costs
at most ``seconds`` (twice that for the multi-call checks) and never hides the
others. Nothing here acts on a target or sends a page unless ``test_page`` is set
(one P3 through each pager that takes P3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from remediator.clients import pager_probe as probe
from remediator.doctor import catalog, evaluate, pages, targets
from remediator.doctor.database import DbFacts, read_facts
from remediator.doctor.needs import Index
from remediator.doctor.report import Check, Report, RunbookReport, not_configured
from remediator.engine import rules as rules_mod
from remediator.paging import routing
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


async def _bounded(work: Awaitable[T], seconds: float, fallback: T) -> T:
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        return fallback


def _scope(settings: Settings, registry: Registry) -> tuple[list[tuple[Runbook, Any]], Check]:
    """The runbooks the rules use, each with its first rule's params; every
    registered runbook with default params when there are no rules to read."""
    everything = [(rb, rb.params()) for rb in sorted(registry, key=lambda r: r.id)]
    path = settings.rules
    if not Path(path).exists():
        detail = f"no rules at {path}: every registered runbook is checked with default params"
        return everything, Check("rules", True, detail, configured=False)
    ruleset, errors = rules_mod.load(path, registry)
    if ruleset is None:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return everything, Check("rules", False, f"invalid: {errors[0]}{more}")
    used: dict[str, tuple[Runbook, Any]] = {}
    for rule in ruleset.rules:
        runbook = registry.get(rule.runbook)
        if runbook is not None and runbook.id not in used:
            used[runbook.id] = (runbook, rule.params)
    if not used:
        return everything, Check("rules", True, f"no rules in {path}", configured=False)
    detail = (
        f"{len(ruleset)} rules in {', '.join(ruleset.sources)}; runbooks {', '.join(sorted(used))}"
    )
    return [used[k] for k in sorted(used)], Check("rules", True, detail)


async def _database(settings: Settings, seconds: float, runbooks: list[Runbook]) -> DbFacts | None:
    dsn = settings.targets.database
    if dsn is None:
        return None
    indexes = {
        n.name
        for steps in catalog.CATALOG.values()
        for ns in steps.values()
        for n in ns
        if isinstance(n, Index)
    }
    return await _bounded(
        read_facts(
            dsn.get_secret_value(),
            catalog.tables(),
            indexes,
            seconds=seconds,
            statements=sorted({(p.sql, p.binds) for p in evaluate.statements(runbooks)}),
        ),
        seconds * 2,
        DbFacts(error=f"unreachable: no answer within {seconds * 2:g}s"),
    )


def _database_check(db: DbFacts | None, gaps: list[str], optional: list[str]) -> Check:
    if db is None:
        return not_configured("database", "targets.database")
    if db.error is not None:
        return Check("database", False, db.error)
    where = f"connected to {db.database} as {db.who} (PostgreSQL {db.version})"
    absent = f"; optional, absent: {', '.join(optional)}" if optional else ""
    if gaps:
        return Check("database", False, f"{where}; missing: {', '.join(gaps)}{absent}")
    return Check("database", True, f"{where}; every required table and column is there{absent}")


async def _pagers(settings: Settings, seconds: float, *, quiet: bool) -> list[Check]:
    p = settings.pagers
    work: list[tuple[str, Awaitable[probe.PagerCheck]]] = []
    if p.pagerduty is not None:
        work.append(("pagerduty", probe.pagerduty(p.pagerduty.url)))
    if p.opsgenie is not None:
        key = p.opsgenie.api_key.get_secret_value()
        work.append(("opsgenie", probe.opsgenie(p.opsgenie.url, key)))
    if p.slack is not None and p.slack.bot_token is not None:
        token = p.slack.bot_token.get_secret_value()
        work.append(("slack", pages.slack_bot(token, p.slack.api_url)))
    elif p.slack is not None and p.slack.webhook_url is not None:
        url = p.slack.webhook_url.get_secret_value()
        work.append(("slack", probe.slack(url, empty_message=not quiet)))
    found = await asyncio.gather(
        *(
            _bounded(w, seconds, probe.PagerCheck(name, False, f"no answer within {seconds:g}s"))
            for name, w in work
        )
    )
    checks: dict[str, Check] = {
        name: not_configured(name, f"pagers.{name}") for name in routing.PAGER_NAMES
    }
    checks.update({f.name: Check(f.name, f.ok, f.detail) for f in found})
    return list(checks.values())


async def _test_page(settings: Settings, checks: list[Check]) -> list[Check]:
    from remediator.daemon import build_pagers

    pagers = build_pagers(settings)
    configured = routing.configured_pagers(settings.pagers)
    content = pages.doctor_page()
    out = []
    try:
        for check in checks:
            pager = pagers.get(check.name)
            if pager is None and check.name in configured:
                # The Slack bot keeps its messages in the state store; doctor opens none.
                out.append(Check(check.name, check.ok, f"{check.detail}; no test page (bot)"))
                continue
            if pager is None or not pager.accepts("P3"):
                out.append(check)
                continue
            delivered, what = await pages.send_test_page(pager, content)
            out.append(Check(check.name, check.ok and delivered, f"{check.detail}; {what}"))
    finally:
        for pager in pagers.values():
            await pager.aclose()
    return out


async def run(
    settings: Settings,
    registry: Registry,
    *,
    test_page: bool = False,
    quiet: bool = False,
    seconds: float = DEFAULT_TIMEOUT,
) -> Report:
    scope, rules_check = _scope(settings, registry)
    runbooks = [rb for rb, _ in scope]
    late = f"no answer within {seconds:g}s"
    # A task group, not one gather: seven differently typed results keep their types,
    # and cancelling the pass (serve stopping) cancels every check with it.
    async with asyncio.TaskGroup() as group:
        db_task = group.create_task(_database(settings, seconds, runbooks))
        redis_task = group.create_task(
            _bounded(targets.redis(settings), seconds, Check("redis", False, late))
        )
        kube_task = group.create_task(
            _bounded(
                targets.kubernetes(settings, evaluate.kube_needs(runbooks)),
                seconds * 2,
                targets.KubeFacts(Check("kubernetes", False, late)),
            )
        )
        aws_task = group.create_task(
            _bounded(
                targets.aws(settings, evaluate.aws_needs(scope)),
                seconds * 2,
                targets.AwsFacts(Check("aws", False, late)),
            )
        )
        http_task = group.create_task(
            _bounded(targets.http(settings), seconds * 2, [Check("http", False, late)])
        )
        prom_task = group.create_task(
            _bounded(
                targets.prometheus(settings, seconds), seconds, Check("prometheus", False, late)
            )
        )
        pagers_task = group.create_task(_pagers(settings, seconds, quiet=quiet))
    db, redis, kube, aws = (
        db_task.result(),
        redis_task.result(),
        kube_task.result(),
        aws_task.result(),
    )
    http, prom, pagers = http_task.result(), prom_task.result(), pagers_task.result()
    if test_page:
        pagers = await _test_page(settings, pagers)
    facts = evaluate.Facts(
        settings=settings,
        db=db,
        redis_ok=redis.ok and redis.configured,
        kube=kube.answers if kube.check.ok or kube.answers else None,
        kube_error=kube.check.detail,
        aws_error="" if aws.check.ok or aws.problems else aws.check.detail,
        aws=aws.problems,
        app_ok=any(c.name == "http.app" and c.ok and c.configured for c in http),
    )
    reports: list[RunbookReport] = []
    gaps: list[str] = []
    optional: list[str] = []
    for rb, params in scope:
        judged = evaluate.judge(rb, params, facts)
        reports.append(RunbookReport(rb.id, rb.title, judged.steps))
        gaps += judged.catalog_gaps
        optional += [o for s in judged.steps for o in s.optional_missing]
    # One entry each, though several steps (of several runbooks) read it.
    gaps, optional = list(dict.fromkeys(gaps)), list(dict.fromkeys(optional))
    routed = routing.for_settings(settings.pagers)
    configured = routing.configured_pagers(settings.pagers)
    notes = [
        f"{s} goes to every configured pager ({', '.join(configured)}): none takes it by default"
        for s in routed.widened
    ]
    if not configured:
        notes.append("no pager is configured: no page reaches a human")
    return Report(
        targets=(
            _database_check(db, gaps, optional),
            redis,
            kube.check,
            aws.check,
            *http,
            prom,
            rules_check,
        ),
        pagers=tuple(pagers),
        routing=routed.as_dict(),
        runbooks=tuple(reports),
        notes=tuple(notes),
    )
