"""How a runbook is declared: steps as data.

A runbook is a frozen ``Runbook`` holding ``Step`` declarations. Each step says
what kind it is, whether it mutates, whether a human must approve it, how to
render it for a plan, how to run it, how to undo it, its timeout and retries.
The executor, the dry-run plan, the page text and ``replay`` all read this one
declaration, so they cannot drift apart.

Step functions take keyword-only arguments (``ctx``, and ``changes`` for undo)
and accept ``**_`` so that new context can be added later without breaking them.
They signal with return values (``Done``/``Skip``) and exceptions (``StepFailed``
for "do not retry", any temporary ``TargetError`` for "retry with backoff").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

# Re-exported: a runbook finds everything a step uses in this module.
from remediator.errors import NotConfigured as NotConfigured
from remediator.errors import StepFailed as StepFailed

if TYPE_CHECKING:
    from remediator.runbook_api.context import Clients, StepContext

Kind = Literal["diagnose", "mitigate", "verify", "notify"]
Approval = Literal["auto", "approve"]
Severity = Literal["P0", "P1", "P2", "P3"]
# The clients a step acts through (``Clients`` attribute names), for `needs`.
Need = Literal["database", "cache", "kubernetes", "aws", "http"]


@dataclass(frozen=True)
class Done:
    """The step ran. ``summary`` is one line for the page and the audit trail.

    ``data`` is kept for later steps (``ctx.results[name]``); ``changes`` is the
    undo record: exactly what this step changed, and nothing else.
    """

    summary: str
    data: Mapping[str, Any] = field(default_factory=dict)
    changes: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Skip:
    """The step decided not to act; ``reason`` says why (it goes on the page)."""

    reason: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Not yet: ask again in ``seconds`` (a build Job still running, a poll).

    The run is parked with a durable wake-up time and its worker freed; any replica
    calls the step again when the time comes. ``data`` is kept and handed back to
    the step as ``ctx.results[its name]`` (e.g. the deadline of its whole wait).
    """

    reason: str
    seconds: float
    data: Mapping[str, Any] = field(default_factory=dict)


StepOutcome = Done | Skip | Wait


class StepFn(Protocol):
    def __call__(self, *, ctx: StepContext, **_: Any) -> Awaitable[StepOutcome]: ...


class UndoFn(Protocol):
    def __call__(
        self, *, ctx: StepContext, changes: Mapping[str, Any], **_: Any
    ) -> Awaitable[StepOutcome]: ...


class RenderFn(Protocol):
    def __call__(self, *, ctx: StepContext, **_: Any) -> str: ...


class UndoRenderFn(Protocol):
    def __call__(self, *, ctx: StepContext, changes: Mapping[str, Any], **_: Any) -> str: ...


@dataclass(frozen=True)
class PlannedNeeds:
    needs: tuple[Need, ...] = ()
    corroborates: bool = False  # without its client the alert cannot be confirmed


@dataclass(frozen=True)
class Statement:
    """A SQL statement a step may run, with its number of binds: ``doctor`` EXPLAINs it
    on the target (never runs it) to tell a missing table, column or privilege."""

    sql: str
    binds: int = 0


@dataclass(frozen=True)
class KubeAccess:
    """A Kubernetes verb a step uses, which ``doctor`` asks the API server about."""

    verb: str
    resource: str
    subresource: str = ""
    group: str = ""


Requirement = Statement | KubeAccess


@dataclass(frozen=True)
class Step:
    name: str
    kind: Kind
    title: str  # human words: "Serve the last-good pricing pack"
    run: StepFn
    render: RenderFn  # the call it makes, for plans: SQL, kubectl, aws ...
    mutates: bool = False
    approval: Approval = "auto"
    # Must be safe to run twice (a crash can interrupt it): put back only what still
    # holds the value the step set, as every shipped undo does.
    undo: UndoFn | None = None
    # The call the undo makes, from the undo record, for the undo's audit row and page
    # (None: they show the step's own call, ``render``).
    render_undo: UndoRenderFn | None = None
    timeout: float = 30.0
    attempts: int = 3  # total tries for temporary errors (tenacity)
    backoff: float = 0.5  # first wait; doubles, capped at 10 s
    idempotent: bool = False  # safe to run again if a crash hid its outcome
    stop_on_failure: bool = False  # later steps depend on this one
    # The clients the step cannot act without. An approval step whose client is not
    # configured is never offered (engine/offer.py): approving it could only fail.
    needs: tuple[Need, ...] = ()
    # An approve step: why it is not offered in this run (None: offer it), from what
    # earlier steps found, e.g. nothing is stuck, so there is nothing to approve.
    withhold: Callable[[StepContext[Any]], str | None] | None = None
    # Whether ``withhold`` depends on what the run's earlier steps found (False: it
    # only checks the step's inputs), so a plan knows whether to promise the approval.
    withhold_reads_run: bool = True
    # For a plan (``replay``): the clients the step's action would act through in this
    # context, and whether an unmet expectation of it means "not corroborated".
    plan_needs: Callable[[StepContext[Any]], PlannedNeeds] | None = None
    # What doctor can check for a step its catalog does not know (YAML runbooks: the
    # statements and verbs of their actions).
    requires: tuple[Requirement, ...] = ()


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TargetFn = Callable[[Mapping[str, str], Any], str]
# A target that depends on the daemon's configuration too: (labels, params, clients);
# ``clients.settings`` is what the steps validate against (None when not configured).
ClientsTargetFn = Callable[[Mapping[str, str], Any, "Clients | None"], str]


@dataclass(frozen=True)
class Runbook:
    id: str  # "RB-01"
    title: str
    severity: Severity
    steps: tuple[Step, ...]
    params: type[BaseModel] = NoParams
    resolve_steps: tuple[Step, ...] = ()  # new actions on resolve (not undos)
    target: TargetFn = lambda labels, params: labels.get("alertname", "")
    page_first: bool = False  # P0: page before diagnosing
    # A notify-level runbook (P2) becomes a page when its alert is still firing
    # after this many seconds (read from the run's params; None: never).
    escalate_after: Callable[[Any], float | None] | None = None
    anchor: str = ""  # runbook document anchor, e.g. "rb-01-..."
    # Used instead of ``target`` when set: the target the steps will act on can depend
    # on the configuration (RB-02 validates the provider against the configured ones).
    configured_target: ClientsTargetFn | None = None
    # What `check-rules` should tell a human about a rule's params: valid, but unsafe
    # or inert as they stand (RB-06 with an empty allow_list blocks nothing in live).
    warnings: Callable[[Any], Sequence[str]] = lambda params: ()
    source: str = ""  # file:line of a YAML runbook ("" for one written in Python)

    def target_for(
        self, labels: Mapping[str, str], params: Any, clients: Clients | None = None
    ) -> str:
        """The run's guarded target (lock, cooldown, blast radius), without the id."""
        if self.configured_target is not None:
            return self.configured_target(labels, params, clients)
        return self.target(labels, params)

    def step(self, name: str) -> Step:
        for s in (*self.steps, *self.resolve_steps):
            if s.name == name:
                return s
        raise KeyError(name)


def describe(text: str) -> RenderFn:
    """A render function for steps whose call is plain words."""

    def render(*, ctx: StepContext, **_: Any) -> str:
        return text

    return render
