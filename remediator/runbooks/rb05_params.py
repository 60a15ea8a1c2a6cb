"""RB-05's params (the instance comes from them, never from a label) and small shared
values: the RDS states in which nothing more is started.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from remediator.errors import InputRejected
from remediator.runbooks import sessions
from remediator.validation import aws as aws_checks

# In these states nothing more is started (a tuple: a plan names them in this order).
BUSY = (
    "rebooting",
    "failing-over",
    "modifying",
    "upgrading",
    "maintenance",
    "creating",
    "deleting",
    "backtracking",
)


def _rds(field: str, value: str) -> str:
    try:
        return aws_checks.check_rds_identifier(field, value)
    except InputRejected as exc:
        raise ValueError(exc.reason) from None


class Params(sessions.SessionGuard):
    db_instance_identifier: str = "dawsos-prod"
    # Set for Aurora: failover then uses failover-db-cluster.
    db_cluster_identifier: str | None = None
    top_statements: int = Field(10, ge=1, le=50)
    long_query_seconds: float = Field(30.0, ge=0, le=86_400)
    # A blocker is terminated only once someone has waited this long behind it.
    block_threshold_seconds: float = Field(60.0, ge=0, le=86_400)
    # Alerts that claim the database is down. Such a claim holds only if the database
    # does not answer us, or has fewer than `connection_headroom` client connections
    # left (clients like the exporter are refused); otherwise nothing is terminated.
    down_alerts: tuple[str, ...] = ("DatabaseDown",)
    connection_headroom: int = Field(3, ge=0, le=100_000)
    scale_up_class: str = "db.r6g.2xlarge"
    # Restore to this long before the alert started (the last moment known good).
    pitr_minutes_before_alert: int = Field(15, ge=0, le=7 * 24 * 60)

    @field_validator("db_instance_identifier")
    @classmethod
    def _instance(cls, v: str) -> str:
        return _rds("db_instance_identifier", v)

    @field_validator("db_cluster_identifier")
    @classmethod
    def _cluster(cls, v: str | None) -> str | None:
        return None if v is None else _rds("db_cluster_identifier", v)

    @field_validator("scale_up_class")
    @classmethod
    def _class(cls, v: str) -> str:
        try:
            return aws_checks.check_instance_class("scale_up_class", v)
        except InputRejected as exc:
            raise ValueError(exc.reason) from None

    @field_validator("down_alerts")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 100 or any(not 0 < len(n) <= 63 for n in v):
            raise ValueError("at most 100 names of 1..63 characters")
        return v


def rounded_seconds(value: float | Decimal | None) -> float:
    """Seconds as a page shows them (``extract(epoch ...)`` is numeric from PG 14 on)."""
    return round(float(value or 0.0), 1)
