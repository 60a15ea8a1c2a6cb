"""The built-in DawsOS runbooks.

They register through the ``remediator.runbooks`` entry point exactly as a
third-party package would: ``register_builtin(registry)``.
"""

from __future__ import annotations

from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Runbook


def builtin() -> list[Runbook]:
    from remediator.runbooks import (
        rb01_pricing_pack,
        rb02_provider_outage,
        rb03_alert_storm,
        rb04_rights_violation,
        rb05_database_incident,
        rb06_security_incident,
    )

    return [
        rb01_pricing_pack.RUNBOOK,
        rb02_provider_outage.RUNBOOK,
        rb03_alert_storm.RUNBOOK,
        rb04_rights_violation.RUNBOOK,
        rb05_database_incident.RUNBOOK,
        rb06_security_incident.RUNBOOK,
    ]


def register_builtin(registry: Registry) -> None:
    for runbook in builtin():
        registry.register(runbook)
