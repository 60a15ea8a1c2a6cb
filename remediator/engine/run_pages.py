"""The one way the engine pages about a run: its steps and approvals as they stand
(read now unless the caller has them already), built into a page and queued in the
outbox under an idempotency key, so a repeat from any replica pages once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from remediator.engine import pages
from remediator.paging.base import PageContent, Severity
from remediator.paging.outbox import Outbox
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings
from remediator.state.records import Approval, Run, StepRecord
from remediator.state.store import StateStore

PageAction = Literal["trigger", "resolve"]


class RunPager:
    def __init__(self, store: StateStore, outbox: Outbox, settings: Settings) -> None:
        self.store = store
        self.outbox = outbox
        self.settings = settings

    async def content(
        self,
        run: Run,
        runbook: Runbook | None,
        headline: str | None = None,
        *,
        at_resolve: bool = False,
        steps: Sequence[StepRecord] | None = None,
        approvals: Sequence[Approval] | None = None,
    ) -> PageContent:
        """The page for ``run``; ``steps`` or ``approvals`` None: read them now."""
        if steps is None:
            steps = await self.store.steps_for_run(run.id)
        if approvals is None:
            approvals = await self.store.approvals_for_run(run.id)
        return pages.build(
            run, steps, approvals, runbook, self.settings, headline=headline, at_resolve=at_resolve
        )

    async def send(
        self,
        idem: str,
        run: Run,
        runbook: Runbook | None,
        headline: str | None = None,
        *,
        action: PageAction = "trigger",
        at_resolve: bool = False,
        steps: Sequence[StepRecord] | None = None,
        approvals: Sequence[Approval] | None = None,
        dedup_key: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Page about ``run`` once per ``idem`` (the outbox's idempotency key).
        ``dedup_key`` and ``severity`` replace the page's own."""
        content = await self.content(
            run, runbook, headline, at_resolve=at_resolve, steps=steps, approvals=approvals
        )
        if dedup_key is not None:
            content = replace(content, dedup_key=dedup_key)
        if severity is not None:
            content = replace(content, severity=severity)
        await self.outbox.enqueue(idem, action, content)
