"""``serve`` logs the doctor's summary at start, in the background.

One structured line per failing check and one summary line. It runs beside the
daemon (start-up never waits for it) with short timeouts, so a silent peer costs at
most a few seconds of one background task. It never sends a page, and is quiet
with the pagers: only GETs (the CLI posts Slack an empty message to judge the
webhook; a daemon restarting in a loop should not).
"""

from __future__ import annotations

import asyncio

from remediator import logs
from remediator.doctor.run import run
from remediator.runbook_api.registry import Registry
from remediator.settings import Settings

log = logs.get("remediator.doctor")
START_TIMEOUT = 5.0  # per check; the whole pass is bounded by a few of these


async def log_summary(
    settings: Settings, registry: Registry, *, seconds: float = START_TIMEOUT
) -> None:
    try:
        report = await asyncio.wait_for(
            run(settings, registry, seconds=seconds, quiet=True), seconds * 4
        )
    except TimeoutError:
        log.warning("doctor_incomplete", detail=f"checks took over {seconds * 4:g}s")
        return
    except Exception as exc:  # a preflight must never take the daemon down
        log.warning("doctor_failed", error=repr(exc)[:300])
        return
    for check in report.failing:
        log.warning("doctor_check_failed", check=check.name, detail=check.detail)
    blocked = [
        f"{rb.runbook}/{s.step}" for rb in report.runbooks for s in rb.steps if not s.runnable
    ]
    log.info(
        "doctor_summary",
        ok=report.ok,
        failing=[c.name for c in report.failing],
        steps_not_runnable=len(blocked),
        not_runnable=blocked[:30],
        routing=report.routing,
        detail="run `remediator doctor` for the whole report",
    )


def spawn(settings: Settings, registry: Registry) -> asyncio.Task[None]:
    """Start the background pass; the caller keeps the task and cancels it at stop."""
    return asyncio.create_task(log_summary(settings, registry), name="doctor-at-start")
