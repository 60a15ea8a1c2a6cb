"""RB-05 steps on the RDS instance (AWS): status, failover, scale up, point-in-time restore.

Failover, scaling and restore run only on approval; a restore never touches the source.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks.rb05_params import BUSY, Params
from remediator.validation import aws as aws_checks

# ------------------------------------------------------------ 1 RDS status


async def rds_status(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    aws = ctx.clients.need_aws()
    st = await aws.describe_db_instance(p.db_instance_identifier)
    pending = dict(st.pending_modified)
    words = (
        f"{st.identifier} is {st.status} ({st.instance_class}, "
        f"{'Multi-AZ' if st.multi_az else 'Single-AZ'})"
    )
    words += f"; pending modifications: {pending}" if pending else "; no pending modifications"
    return Done(
        words,
        data={
            "status": st.status,
            "instance_class": st.instance_class,
            "multi_az": st.multi_az,
            "pending_modified": pending,
        },
    )


def render_rds_status(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return f"aws rds describe-db-instances --db-instance-identifier {p.db_instance_identifier}"


# -------------------------------------------------------------- 2 failover


async def failover(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    aws = ctx.clients.need_aws()
    st = await aws.describe_db_instance(p.db_instance_identifier)
    if st.status in BUSY:
        return Skip(f"{st.identifier} is {st.status}: a failover or change is already under way")
    if p.db_cluster_identifier is not None:
        await aws.failover_db_cluster(p.db_cluster_identifier)
        what = f"failed over cluster {p.db_cluster_identifier}"
    else:
        await aws.reboot_db_instance_with_failover(p.db_instance_identifier)
        what = f"rebooted {p.db_instance_identifier} with failover to its standby"
    return Done(
        f"{what} (status was {st.status}); expect 1-3 minutes",
        data={"previous_status": st.status},
        changes={"failover": p.db_cluster_identifier or p.db_instance_identifier},
    )


def render_failover(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    if p.db_cluster_identifier is not None:
        return f"aws rds failover-db-cluster --db-cluster-identifier {p.db_cluster_identifier}"
    return (
        f"aws rds reboot-db-instance --db-instance-identifier {p.db_instance_identifier}"
        " --force-failover"
    )


# --------------------------------------------------------------- 5 scale up


async def scale_up(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    aws = ctx.clients.need_aws()
    st = await aws.describe_db_instance(p.db_instance_identifier)
    if st.instance_class == p.scale_up_class:
        return Skip(f"{st.identifier} already runs as {p.scale_up_class}")
    if st.status in BUSY:
        return Skip(f"{st.identifier} is {st.status}: wait for it to be available")
    previous = await aws.modify_db_instance_class(p.db_instance_identifier, p.scale_up_class)
    # Kept after resolve (scaling back costs another outage); the record says how.
    return Done(
        f"scaling {p.db_instance_identifier} from {previous} to {p.scale_up_class}"
        f" (5-15 min; Multi-AZ reduces downtime); to go back later: aws rds"
        f" modify-db-instance --db-instance-identifier {p.db_instance_identifier}"
        f" --db-instance-class {previous} --apply-immediately",
        data={"previous_class": previous, "new_class": p.scale_up_class},
        changes={
            "instance": p.db_instance_identifier,
            "previous_class": previous,
            "new_class": p.scale_up_class,
        },
    )


def render_scale_up(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return (
        f"aws rds modify-db-instance --db-instance-identifier {p.db_instance_identifier}"
        f" --db-instance-class {p.scale_up_class} --apply-immediately"
    )


# ------------------------------------------------------ 6 point-in-time restore


def _restore_plan(ctx: StepContext) -> tuple[datetime, str]:
    p = ctx.params_as(Params)
    try:
        started = datetime.fromisoformat(ctx.alert.starts_at.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailed(f"alert startsAt {ctx.alert.starts_at[:40]!r} is not a time") from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    when = (started - timedelta(minutes=p.pitr_minutes_before_alert)).astimezone(UTC)
    when = when.replace(microsecond=0)
    target = f"{p.db_instance_identifier[:45]}-restore-{when:%Y%m%d%H%M}"
    return when, aws_checks.check_rds_identifier("target", target)


async def point_in_time_restore(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    when, target = _restore_plan(ctx)
    aws = ctx.clients.need_aws()
    await aws.restore_db_instance_to_point_in_time(p.db_instance_identifier, target, when)
    return Done(
        f"restoring {p.db_instance_identifier} as of {when:%Y-%m-%dT%H:%M:%SZ} into new"
        f" instance {target}; verify it (SELECT count(*) FROM portfolios) before"
        " switching DATABASE_URL by hand",
        data={"target": target, "restore_time": when.isoformat()},
        changes={"created_instance": target},
    )


def render_point_in_time_restore(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    when, target = _restore_plan(ctx)
    return (
        f"aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier"
        f" {p.db_instance_identifier} --target-db-instance-identifier {target}"
        f" --restore-time {when:%Y-%m-%dT%H:%M:%SZ}"
        "  # only if data corruption is confirmed; the switch-over stays manual"
    )
