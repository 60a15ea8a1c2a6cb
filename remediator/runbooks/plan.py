"""How runbook steps render their calls for plans, pages and ``replay``.

Shared by every runbook so that a plan reads the same everywhere: the statement,
then one ``-- $n = value`` line per bind value. It only formats text; it never
builds SQL from values (the statements stay parameterised).
"""

from __future__ import annotations

from remediator.runbook_api.context import StepContext


class Hint(str):
    """A bind value known only at run time, shown as words in a plan."""

    __slots__ = ()


def sql(text: str, *binds: object) -> str:
    """The statement and, one per line, the values it binds (as a plan shows them)."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    lines += [f"-- ${i} = {b if isinstance(b, Hint) else repr(b)}" for i, b in enumerate(binds, 1)]
    return "\n".join(lines)


def namespace(ctx: StepContext) -> str:
    """The Kubernetes namespace the step acts in, for rendering."""
    kube = ctx.clients.kubernetes
    if kube is not None:
        return str(kube.namespace)
    settings = ctx.clients.settings
    if settings is not None:
        return str(settings.targets.kubernetes.namespace)
    return "<namespace>"
