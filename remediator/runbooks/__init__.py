"""The built-in DawsOS runbooks (RB-01 .. RB-06).

They register through the ``remediator.runbooks`` entry point exactly as a
third-party package would: ``register_builtin(registry)``.
"""

from __future__ import annotations

from remediator.engine.registry import Registry


def register_builtin(registry: Registry) -> None:
    from remediator.runbooks import ALL

    for runbook in ALL:
        registry.register(runbook)


ALL: list = []  # type: ignore[type-arg]  # filled as the runbook modules land
