"""RB-05 steps on the RDS instance (AWS), as actions: status, failover, scale up,
point-in-time restore.

Failover, scaling and restore run only on approval; a restore never touches the source.
None of them is undone on resolve: a failover cannot be taken back, scaling down costs
another outage (the scale-up records the previous class and the call back, for a
human), and a restore only adds an instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel

from remediator.errors import InputRejected
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks.rb05_params import BUSY, Params
from remediator.validation import aws as aws_checks


def _only_if(command: str, *checks: str) -> str:
    """The call with the checks its action makes first (an unmet one skips the step),
    after it as a shell comment, so a plan shows them and a pasted line still runs."""
    return f"{command}  # only if {'; '.join(checks)}"


def _idle(instance: str) -> str:
    return f"{instance} is not {', '.join(BUSY[:-1])} or {BUSY[-1]} (its status is read first)"


# ------------------------------------------------------------ 1 RDS status


@dataclass(frozen=True)
class RdsStatus:
    instance: str

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return f"aws rds describe-db-instances --db-instance-identifier {self.instance}"

    async def execute(self, clients: Clients) -> StepOutcome:
        st = await clients.need_aws().describe_db_instance(self.instance)
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


@step(
    "rds_status",
    "diagnose",
    "RDS instance status and pending modifications",
    mutates=False,
    timeout=20.0,
)
def rds_status(ctx: StepContext[Params]) -> RdsStatus:
    return RdsStatus(ctx.params.db_instance_identifier)


# -------------------------------------------------------------- 2 failover


@dataclass(frozen=True)
class RdsFailover:
    """Fail over to the standby: the Aurora cluster's, when ``cluster`` is set, else
    the Multi-AZ instance's (a reboot with failover). Nothing started while the
    instance is busy with another change."""

    instance: str
    cluster: str | None = None

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        idle = _idle(self.instance)
        if self.cluster is not None:
            return _only_if(
                f"aws rds failover-db-cluster --db-cluster-identifier {self.cluster}", idle
            )
        # The client refuses a Single-AZ instance itself: the step fails, saying so.
        return _only_if(
            f"aws rds reboot-db-instance --db-instance-identifier {self.instance} --force-failover",
            idle,
            f"{self.instance} is Multi-AZ (else it fails: no standby to fail over to)",
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        aws = clients.need_aws()
        st = await aws.describe_db_instance(self.instance)
        if st.status in BUSY:
            return Skip(
                f"{st.identifier} is {st.status}: a failover or change is already under way"
            )
        if self.cluster is not None:
            await aws.failover_db_cluster(self.cluster)
            what = f"failed over cluster {self.cluster}"
        else:
            await aws.reboot_db_instance_with_failover(self.instance)
            what = f"rebooted {self.instance} with failover to its standby"
        # Recorded for the audit; a failover cannot be taken back.
        return Done(
            f"{what} (status was {st.status}); expect 1-3 minutes",
            data={"previous_status": st.status},
            changes={"failover": self.cluster or self.instance},
        )


@step(
    "failover",
    "mitigate",
    "Fail over to the standby (if the primary is down)",
    mutates=True,
    approval="approve",
    needs=("aws",),
    timeout=60.0,
    attempts=1,
)
def failover(ctx: StepContext[Params]) -> RdsFailover:
    p = ctx.params
    return RdsFailover(p.db_instance_identifier, p.db_cluster_identifier)


# --------------------------------------------------------------- 5 scale up


@dataclass(frozen=True)
class RdsScaleUp:
    """Move the instance to ``instance_class`` now, recording the class it had."""

    instance: str
    instance_class: str

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def command(self) -> str:
        return (
            f"aws rds modify-db-instance --db-instance-identifier {self.instance}"
            f" --db-instance-class {self.instance_class} --apply-immediately"
        )

    def render(self) -> str:
        return _only_if(
            self.command(),
            f"{self.instance} is not {self.instance_class} already",
            _idle(self.instance),
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        aws = clients.need_aws()
        st = await aws.describe_db_instance(self.instance)
        if st.instance_class == self.instance_class:
            return Skip(f"{st.identifier} already runs as {self.instance_class}")
        if st.status in BUSY:
            return Skip(f"{st.identifier} is {st.status}: wait for it to be available")
        previous = await aws.modify_db_instance_class(self.instance, self.instance_class)
        changes = {
            "instance": self.instance,
            "previous_class": previous,
            "new_class": self.instance_class,
        }
        # Kept after resolve (scaling back costs another outage); the page gives the
        # call back, which is this action's own undo.
        return Done(
            f"scaling {self.instance} from {previous} to {self.instance_class}"
            f" (5-15 min; Multi-AZ reduces downtime); to go back later:"
            f" {self.undo(changes).command()}",
            data={"previous_class": previous, "new_class": self.instance_class},
            changes=changes,
        )

    def planned_undo(self) -> str:
        return RdsScaleUp(self.instance, "<the class recorded>").command()

    def undo(self, changes: Mapping[str, object]) -> RdsScaleUp:
        """Back to the recorded class. Not run on resolve (the step is not temporary):
        a human decides when another outage is worth it."""
        previous = changes.get("previous_class")
        if not isinstance(previous, str):
            raise StepFailed("the scale-up record has no previous class")
        return RdsScaleUp(self.instance, previous)


@step(
    "scale_up",
    "mitigate",
    "Scale the instance up",
    mutates=True,
    approval="approve",
    needs=("aws",),
    timeout=60.0,
    attempts=1,
)
def scale_up(ctx: StepContext[Params]) -> RdsScaleUp:
    p = ctx.params
    return RdsScaleUp(p.db_instance_identifier, p.scale_up_class)


# ------------------------------------------------------ 6 point-in-time restore


class Restore(BaseModel):
    """What point_in_time_restore started."""

    target: str
    restore_time: str


@dataclass(frozen=True)
class RdsRestore:
    """Restore ``source`` as of ``when`` into the new instance ``target``; the source
    is never touched and the switch-over stays manual."""

    source: str
    target: str
    when: datetime

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return (
            f"aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier"
            f" {self.source} --target-db-instance-identifier {self.target}"
            f" --restore-time {self.when:%Y-%m-%dT%H:%M:%SZ}"
            "  # only if data corruption is confirmed; the switch-over stays manual"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        aws = clients.need_aws()
        await aws.restore_db_instance_to_point_in_time(self.source, self.target, self.when)
        # Nothing to undo: the restore only adds an instance, which a human deletes.
        return Done(
            f"restoring {self.source} as of {self.when:%Y-%m-%dT%H:%M:%SZ} into new"
            f" instance {self.target}; verify it (SELECT count(*) FROM portfolios) before"
            " switching DATABASE_URL by hand",
            data=Restore(target=self.target, restore_time=self.when.isoformat()).model_dump(),
            changes={"created_instance": self.target},
        )


@step(
    "point_in_time_restore",
    "mitigate",
    "Point-in-time restore into a new instance (only if data is corrupt)",
    mutates=True,
    approval="approve",
    needs=("aws",),
    timeout=60.0,
    attempts=1,
)
def point_in_time_restore(ctx: StepContext[Params]) -> RdsRestore:
    """To ``pitr_minutes_before_alert`` before the alert started (the last moment
    known good), into an instance named after the source and that time."""
    p = ctx.params
    try:
        started = datetime.fromisoformat(ctx.alert.starts_at.replace("Z", "+00:00"))
    except ValueError:
        # The webhook model makes startsAt canonical; a bad one is refused, not run.
        raise InputRejected("startsAt", f"{ctx.alert.starts_at[:40]!r} is not a time") from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    when = (started - timedelta(minutes=p.pitr_minutes_before_alert)).astimezone(UTC)
    when = when.replace(microsecond=0)
    target = f"{p.db_instance_identifier[:45]}-restore-{when:%Y%m%d%H%M}"
    return RdsRestore(
        p.db_instance_identifier, aws_checks.check_rds_identifier("target", target), when
    )
