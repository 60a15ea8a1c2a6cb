"""RB-01's params and the pack date D: which day, whether its pack is late, its Job names.

The runbook module (rb01_pricing_pack) says why D and the lateness rule are what they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

from remediator import validation
from remediator.errors import (
    NotCorroborated,
)
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Skip
from remediator.runbooks import jobs, sessions


class Params(sessions.SessionGuard):
    rerun_max_attempts: int = Field(2, ge=1, le=5)
    # The build runs as `kubectl exec deployment/scheduler` would: a Job copied from
    # this Deployment's pod template (one container: the default one, or this one).
    build_deployment: str = "scheduler"
    build_container: str | None = None
    build_image: str | None = None  # overrides the template's image (None: keep it)
    # Job records are how attempts are counted: keep them for the whole day.
    job_ttl_seconds: int = Field(172_800, ge=86_400, le=604_800)
    build_providers: tuple[str, ...] = ("polygon", "fmp", "fred")
    # The wait ends well before the engine's 15-minute target lock would expire.
    build_wait_seconds: float = Field(600.0, gt=0, le=840)
    build_poll_seconds: float = Field(15.0, gt=0, le=120)
    # The SLO is "pack ready by 00:15 local time"; the runbook names no zone. DawsOS
    # prices US listings (Polygon, FMP; FRED's series), so its day is New York's.
    timezone: str = "America/New_York"
    date_window_days: int = Field(7, ge=0, le=31)
    # Yesterday's pack still counts as late this long after midnight (in `timezone`):
    # an alert raised at 23:55 is delivered and handled after 00:00.
    late_grace_minutes: int = Field(120, ge=0, le=720)
    scheduler_selector: str = "app=scheduler"
    log_tail_lines: int = Field(200, ge=1, le=5000)
    slow_query_seconds: float = Field(30.0, gt=0)
    # Step 3's "kill if stuck" (approve): a listed statement running this long, through
    # RB-05's guards (protected roles and applications; at most max_terminations).
    stuck_query_seconds: float = Field(600.0, gt=0, le=86_400)
    max_terminations: int = Field(1, ge=0, le=20)

    @field_validator("build_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return jobs.check_image(v)

    @field_validator("build_deployment", "build_container")
    @classmethod
    def _workload(cls, v: str | None) -> str | None:
        return jobs.check_name(v)

    @field_validator("build_providers")
    @classmethod
    def _providers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not validation.is_provider_name(p) for p in v):
            raise ValueError("a non-empty list of provider names")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _poll_below_wait(self) -> Params:
        if self.build_poll_seconds > self.build_wait_seconds:
            raise ValueError("build_poll_seconds must not exceed build_wait_seconds")
        return self


# ------------------------------------------------------------------ helpers


def pack_date(labels: Mapping[str, str], params: Params, now: datetime | None = None) -> date:
    """The pack date D: the ``date`` label (validated) or today in ``timezone``."""
    zone = ZoneInfo(params.timezone)
    today = (now.astimezone(zone) if now is not None else datetime.now(zone)).date()
    raw = labels.get("date")
    if raw is None:
        return today
    return validation.pack_date(raw, today=today, window_days=params.date_window_days, field="date")


def corroborate_date(day: date, params: Params, now: datetime | None = None) -> None:
    """NotCorroborated unless ``day``'s pack can be late ``now``.

    Today's can; yesterday's only within ``late_grace_minutes`` after midnight; a
    future date's is not due yet, and an older date's is history, not an incident.
    """
    now = now if now is not None else datetime.now(ZoneInfo(params.timezone))
    today = now.date()
    if day == today:
        return
    if day > today:
        raise NotCorroborated(
            f"{day} is in the future (today is {today} in {params.timezone}): its pack is"
            " not due yet; nothing built or marked"
        )
    since_midnight = now - datetime.combine(today, datetime.min.time(), now.tzinfo)
    grace = timedelta(minutes=params.late_grace_minutes)
    if day == today - timedelta(days=1) and since_midnight < grace:
        return
    until = f"; yesterday's until {grace} after midnight" if grace else ""
    raise NotCorroborated(
        f"{day} is past: only today's pack ({today} in {params.timezone}) can be late"
        f"{until}; nothing built or marked"
    )


class Pack(BaseModel):
    """A pack as recent_packs lists it (``packs.listed``)."""

    id: str
    date: str
    is_fresh: bool | None = None  # as the catalog has it (NULL where the column allows)
    status: str | None = None


class PacksFound(BaseModel):
    """What recent_packs found: the last packs, and D when it confirmed D's pack late."""

    packs: list[Pack] = []
    late: str | None = None


def is_late(ctx: StepContext, day: date) -> bool:
    """Whether this run's corroboration (step 3) confirmed that D's pack is late."""
    found = ctx.found("recent_packs", PacksFound)
    return found is not None and found.late == day.isoformat()


def unconfirmed(day: date) -> Skip:
    return Skip(
        f"the pack for {day} was not confirmed late (the pack listing did not run or"
        " failed): not acting blind"
    )


def job_name(day: date, attempt: int) -> str:
    return validation.k8s_name(f"build-pack-{day.isoformat()}-{attempt}", field="job")
