"""RB-03's params: the storm threshold, the offenders' cap, the exempt alerts, the
evaluator deployment. No alert label is read anywhere in RB-03.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.errors import InputRejected


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_minutes: int = Field(60, ge=1, le=1440)
    window_minutes: int = Field(5, ge=1, le=60)
    top_limit: int = Field(10, ge=1, le=100)
    disable_top_n: int = Field(3, ge=0, le=20)
    min_notifications: int = Field(50, ge=1)  # in the window, to be disabled
    # The storm the alert claims must be in the notifications table: at least this
    # many per minute over the window (AlertStorm fires above 200 a minute; a fifth
    # of that still tells a storm, even an easing one, from a quiet night).
    storm_per_minute: float = Field(40.0, gt=0, le=100_000)
    exempt_alerts: tuple[str, ...] = ()  # alerts.id never cooled down nor disabled
    evaluator_deployment: str = "scheduler"
    dedupe_days: int = Field(2, ge=0, le=90)  # today (UTC) and this many days before
    max_delete: int = Field(5000, ge=1, le=50_000)

    @field_validator("evaluator_deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        try:
            return validation.k8s_name(v, field="evaluator_deployment")
        except InputRejected as exc:
            raise ValueError(exc.reason) from exc

    @field_validator("exempt_alerts")
    @classmethod
    def _exempt(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not 1 <= len(i) <= 64 for i in v):
            raise ValueError("alert ids are 1..64 characters")
        return v
