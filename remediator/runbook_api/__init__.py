"""What a runbook is written against: its declaration, its context and its registry.

Built-in and third-party runbooks import only this package (and
``remediator.validation``); the engine reads the same declarations to plan, run,
render and undo. It imports nothing of the engine, the state store or the pagers.
"""

from __future__ import annotations

from remediator.runbook_api.action_steps import Precondition, found_by, step
from remediator.runbook_api.actions import (
    Action,
    Hint,
    KubeJobFrom,
    KubeRestart,
    KubeScale,
    Note,
    ProviderProbe,
    RedisRead,
    Sql,
    render_sql,
)
from remediator.runbook_api.context import AlertView, Clients, StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed, Wait

__all__ = [
    "Action",
    "AlertView",
    "Clients",
    "Done",
    "Hint",
    "KubeJobFrom",
    "KubeRestart",
    "KubeScale",
    "Note",
    "Precondition",
    "ProviderProbe",
    "RedisRead",
    "Registry",
    "Runbook",
    "Skip",
    "Sql",
    "Step",
    "StepContext",
    "StepFailed",
    "Wait",
    "found_by",
    "render_sql",
    "step",
]
