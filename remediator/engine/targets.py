"""A run's guarded target: the key of its lock, cooldown and blast radius.

One function, so the engine and ``remediator backtest`` name a run's target the same
way: ``RB-02:polygon``. The runbook id keeps two runbooks' targets apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from remediator.errors import RemediatorError
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import Runbook


def run_target(
    runbook: Runbook, labels: Mapping[str, str], params: BaseModel, clients: Clients | None
) -> str:
    try:
        return f"{runbook.id}:{runbook.target_for(labels, params, clients)}"
    except RemediatorError:
        # A hostile label cannot pick the lock key; the run will fail its checks.
        return f"{runbook.id}:{labels.get('alertname', '')}:invalid"
