"""What a runbook is written against: its declaration, its context and its registry.

Built-in and third-party runbooks import only this package (and
``remediator.validation``); the engine reads the same declarations to plan, run,
render and undo. It imports nothing of the engine, the state store or the pagers.
"""

from __future__ import annotations

from remediator.runbook_api.context import AlertView, Clients, StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed, Wait

__all__ = [
    "AlertView",
    "Clients",
    "Done",
    "Registry",
    "Runbook",
    "Skip",
    "Step",
    "StepContext",
    "StepFailed",
    "Wait",
]
