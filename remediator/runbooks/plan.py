"""How runbook steps render their calls for plans, pages and ``replay``.

Shared by every runbook so that a plan reads the same everywhere: the statement,
then one ``-- $n = value`` line per bind value. It only formats text; it never
builds SQL from values (the statements stay parameterised).
"""

from __future__ import annotations

from remediator.runbook_api.actions import Hint as Hint  # re-exported for the runbooks
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import StepContext


def sql(text: str, *binds: object) -> str:
    """The statement and, one per line, the values it binds (as a plan shows them)."""
    return render_sql(text, binds)


def namespace(ctx: StepContext) -> str:
    """The Kubernetes namespace the step acts in, for rendering."""
    kube = ctx.clients.kubernetes
    if kube is not None:
        return str(kube.namespace)
    settings = ctx.clients.settings
    if settings is not None:
        return str(settings.targets.kubernetes.namespace)
    return "<namespace>"
