"""Typed actions: one object renders a call, runs it, and builds its own undo.

A step that acts through an action cannot show one thing in ``replay`` and the page
and do another: the plan is ``action.render()`` of the very object the engine later
runs with ``action.execute(clients)``. An action knows the client it needs and
whether it mutates; a mutating action is run only by the engine's step runner, after
the safety gate (runbook_api never reaches a client on its own).

The clients are reached through the Protocols of ``client_protocols`` (the types of
``Clients``), so this module stays free of drivers: the real clients
(``remediator.clients``) satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar, Literal, NoReturn, Protocol, TypeVar

from remediator import validation
from remediator.errors import NotConfigured, NotCorroborated
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome

# At most this many rows of a diagnose query are kept for the page and the audit trail.
MAX_ROWS = 20
Expect = Literal["any", "rows", "no_rows"]
JsonScalar = str | int | float | bool | None
T = TypeVar("T")


class Action(Protocol):
    """What every action offers the step that holds it."""

    @property
    def needs(self) -> Need | None: ...
    @property
    def mutates(self) -> bool: ...
    def render(self) -> str: ...
    async def execute(self, clients: Clients) -> StepOutcome: ...


def _json_value(value: object) -> JsonScalar:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _unmet(reason: str, corroborates: bool) -> NoReturn:
    """An expectation the target did not meet: on a corroborating step the alert is
    not confirmed (nothing changes); otherwise the step failed."""
    if corroborates:
        raise NotCorroborated(reason)
    raise StepFailed(reason)


class Hint(str):
    """A bind value known only at run time, shown as words in a plan."""

    __slots__ = ()


def _checking(need: Callable[[], T], corroborates: bool) -> T:
    """The client a read needs. A corroborating read without its target cannot
    confirm the alert: that is "not corroborated" (nothing changes), never a skipped
    check the changes after it would take as confirmed."""
    try:
        return need()
    except NotConfigured as exc:
        if corroborates:
            raise NotCorroborated(f"the alert cannot be confirmed: {exc.reason}") from exc
        raise


def render_sql(text: str, binds: Sequence[object]) -> str:
    """The statement and, one per line, the values it binds (never spliced in), as
    every plan, page and audit row shows a statement."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    lines += [f"-- ${i} = {b if isinstance(b, Hint) else repr(b)}" for i, b in enumerate(binds, 1)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Sql:
    """One parameterised statement; a read runs in a READ ONLY transaction, so a step
    declared as not mutating cannot change the database whatever its text says."""

    query: str
    binds: tuple[object, ...] = ()
    mutates: bool = False
    expect: Expect = "any"
    corroborates: bool = False  # an unmet expectation means the alert is not confirmed

    needs: ClassVar[Need] = "database"

    def render(self) -> str:
        header = "-- one transaction" if self.mutates else "-- read-only transaction"
        return f"{header}\n{render_sql(self.query, self.binds)}"

    async def execute(self, clients: Clients) -> StepOutcome:
        db = _checking(clients.need_database, self.corroborates)
        async with db.transaction(readonly=not self.mutates) as tx:
            if self.mutates:
                status = await tx.execute(self.query, *self.binds)
                return Done(status, data={"status": status}, changes={"status": status})
            rows = await tx.fetch(self.query, *self.binds)
        kept = [{k: _json_value(v) for k, v in row.items()} for row in rows[:MAX_ROWS]]
        summary = f"{len(rows)} row(s)"
        unmet = (self.expect == "rows" and not rows) or (self.expect == "no_rows" and rows)
        if unmet:
            wanted = "at least one row" if self.expect == "rows" else "no rows"
            _unmet(f"the query returned {len(rows)} row(s); {wanted} expected", self.corroborates)
        return Done(summary, data={"rows": kept, "count": len(rows)})


@dataclass(frozen=True)
class KubeScale:
    """Set a Deployment's replicas; records the previous count, and its undo puts it
    back only while the Deployment still has the count this action set."""

    deployment: str
    replicas: int
    namespace: str = "<namespace>"

    needs: ClassVar[Need] = "kubernetes"

    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return (
            f"kubectl scale deployment/{self.deployment} -n {self.namespace}"
            f" --replicas={self.replicas}  # previous replicas recorded"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        kube = clients.need_kubernetes()
        current = await kube.get_replicas(self.deployment)
        if current == self.replicas:
            return Skip(f"deployment/{self.deployment} already has {current} replicas")
        previous = int(await kube.scale(self.deployment, self.replicas))
        return Done(
            f"scaled deployment/{self.deployment} from {previous} to {self.replicas} replicas",
            data={"previous_replicas": previous},
            changes={
                "deployment": self.deployment,
                "previous_replicas": previous,
                "replicas": self.replicas,
            },
        )

    def planned_undo(self) -> str:
        """The undo's call as a plan shows it, before anything was recorded."""
        return (
            f"kubectl scale deployment/{self.deployment} -n {self.namespace}"
            f" --current-replicas={self.replicas} --replicas=<the replicas recorded>"
        )

    def undo(self, changes: Mapping[str, object]) -> KubeScaleBack:
        """Put back what the record says was changed (the Deployment it names, which a
        rule reload since cannot redirect)."""
        previous = changes.get("previous_replicas")
        replicas = changes.get("replicas")
        if not isinstance(previous, int) or not isinstance(replicas, int):
            raise StepFailed("the undo record has no replica counts")
        deployment = validation.k8s_name(
            changes.get("deployment", self.deployment), field="deployment"
        )
        return KubeScaleBack(deployment, previous, replicas, self.namespace)


@dataclass(frozen=True)
class KubeScaleBack:
    deployment: str
    previous: int
    set_to: int
    namespace: str = "<namespace>"

    needs: ClassVar[Need] = "kubernetes"

    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return (
            f"kubectl scale deployment/{self.deployment} -n {self.namespace}"
            f" --current-replicas={self.set_to} --replicas={self.previous}"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        kube = clients.need_kubernetes()
        current = await kube.get_replicas(self.deployment)
        if current != self.set_to:
            return Skip(
                f"deployment/{self.deployment} now has {current} replicas (changed since);"
                " left alone"
            )
        await kube.scale(self.deployment, self.previous)
        return Done(f"scaled deployment/{self.deployment} back to {self.previous} replicas")


@dataclass(frozen=True)
class KubeRestart:
    """What ``kubectl rollout restart`` does. Nothing to undo: the pods are new."""

    deployment: str
    namespace: str = "<namespace>"

    needs: ClassVar[Need] = "kubernetes"

    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return f"kubectl rollout restart deployment/{self.deployment} -n {self.namespace}"

    async def execute(self, clients: Clients) -> StepOutcome:
        kube = clients.need_kubernetes()
        stamp = await kube.rollout_restart(self.deployment)
        return Done(f"restarted deployment/{self.deployment} at {stamp}", data={"at": stamp})


@dataclass(frozen=True)
class KubeJobFrom:
    """A Job running ``argv`` in a copy of a Deployment's pod template (its image, env,
    secrets, service account): what ``kubectl exec deployment/D -- argv`` runs, as a
    Job that survives the daemon. The name is fixed per run, so a retry finds it."""

    name: str
    deployment: str
    argv: tuple[str, ...]
    namespace: str = "<namespace>"
    ttl_seconds: int = 86_400

    needs: ClassVar[Need] = "kubernetes"

    mutates: ClassVar[bool] = True

    def render(self) -> str:
        args = " ".join(self.argv)
        return (
            f"# Job {self.name} from deployment/{self.deployment}'s pod template\n"
            f"kubectl exec deployment/{self.deployment} -n {self.namespace} -- {args}"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        kube = clients.need_kubernetes()
        job = await kube.create_job_from_deployment(
            self.name,
            self.deployment,
            list(self.argv),
            labels={"app.kubernetes.io/managed-by": "remediator"},
            ttl_seconds_after_finished=self.ttl_seconds,
        )
        return Done(f"started Job {job}", data={"job": job})


@dataclass(frozen=True)
class RedisRead:
    """Which of these cache keys hold a value (reads only, never a write)."""

    keys: tuple[str, ...]
    expect: Literal["any", "present", "absent"] = "any"
    corroborates: bool = False

    needs: ClassVar[Need] = "cache"

    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return "redis-cli MGET " + " ".join(self.keys)

    async def execute(self, clients: Clients) -> StepOutcome:
        cache = _checking(clients.need_cache, self.corroborates)
        values = await cache.get_many(list(self.keys))
        present = sorted(k for k, v in values.items() if v is not None)
        missing = sorted(k for k in self.keys if values.get(k) is None)
        summary = f"{len(present)} of {len(self.keys)} key(s) present"
        unmet = (self.expect == "present" and missing) or (self.expect == "absent" and present)
        if unmet:
            _unmet(f"{summary}; expected all {self.expect}", self.corroborates)
        return Done(summary, data={"present": present, "missing": missing})


@dataclass(frozen=True)
class ProviderProbe:
    """The status endpoint of a provider configured in ``targets.http.providers``
    (URLs and API keys live in the config, never in a runbook or a label)."""

    provider: str
    expect: Literal["any", "up", "down"] = "any"
    corroborates: bool = False

    needs: ClassVar[Need] = "http"

    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return f"GET the status URL of provider {self.provider} (targets.http.providers)"

    async def execute(self, clients: Clients) -> StepOutcome:
        http = _checking(clients.need_http, self.corroborates)
        health = await http.provider_status(self.provider)
        state = "up" if health.healthy else "down"
        summary = f"provider {self.provider} is {state}: {health.detail}"
        if self.expect != "any" and state != self.expect:
            _unmet(f"{summary}; expected {self.expect}", self.corroborates)
        return Done(summary, data={"up": health.healthy})


@dataclass(frozen=True)
class Note:
    """Words for the human: they go on the page and in the audit trail as they are."""

    text: str

    needs: ClassVar[None] = None

    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return f"page: {self.text}"

    async def execute(self, clients: Clients) -> StepOutcome:
        return Done(self.text)
