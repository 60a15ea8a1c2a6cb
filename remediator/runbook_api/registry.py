"""The runbook registry, filled from the ``remediator.runbooks`` entry-point group.

An entry point names a callable that takes the registry and registers runbooks
(the built-in DawsOS runbooks register the same way a third party would).
Tests build a fresh ``Registry()`` and register their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

from remediator import logs
from remediator.runbook_api.steps import Runbook

log = logs.get("remediator.registry")
GROUP = "remediator.runbooks"


class Registry:
    def __init__(self) -> None:
        self._runbooks: dict[str, Runbook] = {}

    def register(self, runbook: Runbook) -> Runbook:
        if runbook.id in self._runbooks and self._runbooks[runbook.id] is not runbook:
            raise ValueError(f"runbook {runbook.id} is already registered")
        names = [s.name for s in (*runbook.steps, *runbook.resolve_steps)]
        if len(names) != len(set(names)):
            raise ValueError(f"runbook {runbook.id} declares a step name twice")
        self._runbooks[runbook.id] = runbook
        return runbook

    def get(self, runbook_id: str) -> Runbook | None:
        return self._runbooks.get(runbook_id)

    def __contains__(self, runbook_id: object) -> bool:
        return runbook_id in self._runbooks

    def __iter__(self) -> Iterator[Runbook]:
        return iter(self._runbooks.values())

    def ids(self) -> list[str]:
        return sorted(self._runbooks)

    def replace_with(self, other: Registry) -> None:
        """Take ``other``'s runbooks, in place: every holder of this registry (the
        engine, the server) sees a reload at once."""
        self._runbooks = dict(other._runbooks)


def load_entry_points(registry: Registry | None = None) -> Registry:
    registry = registry if registry is not None else Registry()
    for ep in entry_points(group=GROUP):
        try:
            ep.load()(registry)
        except Exception as exc:
            log.error("runbook_plugin_failed", entry_point=ep.name, error=repr(exc))
    return registry
