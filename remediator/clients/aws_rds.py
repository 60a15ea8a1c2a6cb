"""RDS: describe, fail over, resize and restore DB instances."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediator.clients.aws_base import AwsApi, _aware
from remediator.errors import TargetRejected
from remediator.validation.aws import check_instance_class, check_rds_identifier

RDS = "aws.rds"


@dataclass(frozen=True, slots=True)
class DbInstanceStatus:
    identifier: str
    status: str
    instance_class: str
    multi_az: bool
    pending_modified: dict[str, Any]


class Rds(AwsApi):
    """RDS instances and clusters; every identifier checked before a request."""

    async def describe_db_instance(self, identifier: str) -> DbInstanceStatus:
        check_rds_identifier("identifier", identifier)
        return await self._run(RDS, "describe_db_instances", lambda: self._describe(identifier))

    async def failover_db_cluster(self, cluster_identifier: str) -> None:
        check_rds_identifier("cluster_identifier", cluster_identifier)
        await self._run(
            RDS,
            "failover_db_cluster",
            lambda: self._rds.failover_db_cluster(DBClusterIdentifier=cluster_identifier),
        )

    async def reboot_db_instance_with_failover(self, identifier: str) -> None:
        """Reboot a Multi-AZ instance onto its standby (ForceFailover=True)."""
        check_rds_identifier("identifier", identifier)

        def reboot() -> None:
            if not self._describe(identifier).multi_az:
                # AWS refuses ForceFailover on Single-AZ; say so plainly instead.
                raise TargetRejected(
                    RDS, f"{identifier} is not Multi-AZ: no standby to fail over to"
                )
            self._rds.reboot_db_instance(DBInstanceIdentifier=identifier, ForceFailover=True)

        await self._run(RDS, "reboot_db_instance", reboot)

    async def modify_db_instance_class(self, identifier: str, instance_class: str) -> str:
        """Change the class at once (ApplyImmediately); return the previous class for undo."""
        check_rds_identifier("identifier", identifier)
        check_instance_class("instance_class", instance_class)

        def modify() -> str:
            previous = self._describe(identifier).instance_class
            if previous != instance_class:
                self._rds.modify_db_instance(
                    DBInstanceIdentifier=identifier,
                    DBInstanceClass=instance_class,
                    ApplyImmediately=True,
                )
            return previous

        return await self._run(RDS, "modify_db_instance", modify)

    async def restore_db_instance_to_point_in_time(
        self, source: str, target: str, restore_time: datetime
    ) -> None:
        check_rds_identifier("source", source)
        check_rds_identifier("target", target)
        when = _aware("restore_time", restore_time)
        await self._run(
            RDS,
            "restore_db_instance_to_point_in_time",
            lambda: self._rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=source,
                TargetDBInstanceIdentifier=target,
                RestoreTime=when,
            ),
        )

    def _describe(self, identifier: str) -> DbInstanceStatus:
        found = self._rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
        if not found:
            raise TargetRejected(RDS, f"DB instance {identifier} not found")
        inst = found[0]
        return DbInstanceStatus(
            identifier=str(inst.get("DBInstanceIdentifier", identifier)),
            status=str(inst.get("DBInstanceStatus", "")),
            instance_class=str(inst.get("DBInstanceClass", "")),
            multi_az=bool(inst.get("MultiAZ", False)),
            pending_modified=copy.deepcopy(dict(inst.get("PendingModifiedValues", {}))),
        )
