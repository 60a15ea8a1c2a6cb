"""Runbooks written as YAML (README "Writing a runbook in YAML"), loaded into the registry.

    runbooks:
      - id: WORKER-STUCK
        title: Restart a stuck worker when its queue backs up
        severity: P2
        labels: {deployment: k8s_name, queue: k8s_name}   # the only labels steps may use
        target: "{labels.deployment}"                      # lock, cooldown, blast radius
        steps:
          - name: backlog
            kind: diagnose
            corroborates: true        # an unmet expect: the alert is not confirmed, nothing runs
            sql: {query: "SELECT ... WHERE queue = $1", binds: ["{labels.queue}"], expect: rows}
          - name: restart
            kind: mitigate
            kube_restart: {deployment: "{labels.deployment}"}
          - name: scale_up
            kind: mitigate
            approval: approve
            temporary: true           # undone on resolve (kube_scale records the replicas)
            kube_scale: {deployment: "{labels.deployment}", replicas: 4}
        on_resolve: [...]             # new actions when the alert resolves (optional)

A YAML runbook becomes the same ``Runbook`` of ``Step`` declarations the built-in
ones are, so it passes the same gate, guards, audit trail and undo. Each step's plan
(``replay``, pages) and its run are one action object built from one spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.runbook_api import action_steps
from remediator.runbook_api.actions import Action
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.registry import Registry, load_entry_points
from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks import plan, yaml_actions
from remediator.runbooks.yaml_actions import ActionSpec, BuildContext
from remediator.runbooks.yaml_templates import SpecError, Template, checked_labels
from remediator.validation.label_kinds import KINDS
from remediator.yaml_lines import LINE, read, yaml_files

_ID = re.compile(r"[A-Z][A-Z0-9-]{1,31}", re.ASCII)
_STEP_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}", re.ASCII)
_RUNBOOK_KEYS = {"id", "title", "severity", "labels", "target", "steps", "on_resolve", "page_first"}
_STEP_KEYS = {
    "name", "title", "kind", "approval", "temporary", "undo", "corroborates",
    "stop_on_failure", "timeout", *yaml_actions.ACTIONS,
}  # fmt: skip
_KINDS = ("diagnose", "mitigate", "verify", "notify")


@dataclass(frozen=True)
class StepSpec:
    name: str
    title: str
    kind: str
    approval: str
    action: ActionSpec
    undo: ActionSpec | None  # an explicit undo action (kube_scale builds its own)
    temporary: bool
    stop_on_failure: bool
    timeout: float


def _step(raw: object, kinds: Mapping[str, str], where: str) -> StepSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a step must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _STEP_NAME.fullmatch(name):
        raise SpecError(f"{where}: step name: lowercase letters, digits and _ (got {name!r})")
    at = f"{where}: step {name!r}"
    for key in sorted(set(raw) - _STEP_KEYS - {LINE}):
        raise SpecError(f"{at}: unknown key {key!r}")
    chosen = [k for k in yaml_actions.ACTIONS if k in raw]
    if len(chosen) != 1:
        raise SpecError(f"{at}: exactly one action, one of {list(yaml_actions.ACTIONS)}")
    corroborates = raw.get("corroborates", False) is True
    try:
        action = yaml_actions.parse(chosen[0], raw[chosen[0]], kinds, corroborates=corroborates)
        undo = _undo(raw, kinds, action)
    except SpecError as exc:
        raise SpecError(f"{at}: {exc}") from None
    kind = raw.get("kind")
    if kind not in _KINDS:
        raise SpecError(f"{at}: kind: one of {list(_KINDS)}")
    if action.mutates != (kind == "mitigate"):
        says = "changes" if action.mutates else "changes nothing"
        raise SpecError(f"{at}: kind {kind} but its action {chosen[0]} {says}")
    approval = raw.get("approval", "auto")
    if approval not in ("auto", "approve"):
        raise SpecError(f"{at}: approval: auto or approve")
    if approval == "approve" and not action.mutates:
        raise SpecError(f"{at}: approval: approve on a step that changes nothing")
    timeout = raw.get("timeout", 30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 600:
        raise SpecError(f"{at}: timeout: seconds, 1..600")
    title = raw.get("title", name.replace("_", " "))
    return StepSpec(
        name=name,
        title=str(title)[:200],
        kind=str(kind),
        approval=str(approval),
        action=action,
        undo=undo,
        temporary=raw.get("temporary", False) is True,
        stop_on_failure=raw.get("stop_on_failure", corroborates) is True,
        timeout=float(timeout),
    )


def _undo(raw: dict[str, Any], kinds: Mapping[str, str], action: ActionSpec) -> ActionSpec | None:
    temporary = raw.get("temporary", False)
    if not isinstance(temporary, bool):
        raise SpecError("temporary: true or false")
    given = raw.get("undo")
    if given is not None and not temporary:
        raise SpecError("undo is given but the step is not temporary: set temporary: true")
    if not temporary:
        return None
    if not action.mutates:
        raise SpecError("temporary on a step that changes nothing")
    if action.undoable:
        if given is not None:
            raise SpecError(f"{action.name} builds its own undo; remove undo")
        return None
    if given is None:
        raise SpecError(
            f"temporary but no undo: {action.name} cannot undo itself; add undo: {{sql: ...}}"
        )
    if not isinstance(given, dict) or set(given) - {LINE} != {"sql"}:
        raise SpecError("undo: expected {sql: {query, binds, mutates: true}}")
    spec = yaml_actions.parse("sql", given["sql"], kinds, corroborates=False)
    if not spec.mutates:
        raise SpecError("undo.sql: an undo changes something: set mutates: true")
    return spec


def _build_context(
    ctx: StepContext, kinds: Mapping[str, str], spec: ActionSpec, step: str
) -> BuildContext:
    values = checked_labels(ctx.labels, kinds, spec.labels)
    # One Job name per run and step: a retry finds its Job, two steps never share one.
    parts = (ctx.runbook.lower()[:20], step.replace("_", "-")[:20], ctx.run_id.lower()[:20])
    job = "-".join(p.strip("-") for p in parts)
    return BuildContext(values, kinds, plan.namespace(ctx), job)


def _to_step(spec: StepSpec, kinds: Mapping[str, str]) -> Step:
    def build(ctx: StepContext) -> Action:
        return spec.action.build(_build_context(ctx, kinds, spec.action, spec.name))

    explicit = spec.undo

    def build_undo(ctx: StepContext, _changes: Mapping[str, Any]) -> Action:
        assert explicit is not None
        return explicit.build(_build_context(ctx, kinds, explicit, spec.name))

    need = spec.action.needs
    return action_steps.step(
        spec.name,
        spec.kind,  # type: ignore[arg-type]  # checked against _KINDS
        spec.title,
        mutates=spec.action.mutates,
        needs=(need,) if need else (),
        approval=spec.approval,  # type: ignore[arg-type]  # checked: auto or approve
        temporary=spec.temporary,
        undo=build_undo if explicit is not None else None,
        timeout=spec.timeout,
        stop_on_failure=spec.stop_on_failure,
        requires=spec.action.requirements() + (explicit.requirements() if explicit else ()),
    )(build)


def _runbook(raw: object, where: str) -> Runbook:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a runbook must be a mapping")
    where = f"{where.rsplit(':', 1)[0]}:{raw.get(LINE, 1)}"
    rb_id = raw.get("id")
    if not isinstance(rb_id, str) or not _ID.fullmatch(rb_id):
        raise SpecError(f"{where}: id: capitals, digits and '-', e.g. WORKER-STUCK")
    at = f"{where}: runbook {rb_id!r}"
    for key in sorted(set(raw) - _RUNBOOK_KEYS - {LINE}):
        raise SpecError(f"{at}: unknown key {key!r}")
    severity = raw.get("severity")
    if severity not in ("P0", "P1", "P2", "P3"):
        raise SpecError(f"{at}: severity: P0, P1, P2 or P3")
    kinds_raw = raw.get("labels", {})
    if not isinstance(kinds_raw, dict):
        raise SpecError(f"{at}: labels: a mapping of label name to validator")
    kinds = {str(k): v for k, v in kinds_raw.items() if k != LINE}
    for label, kind in kinds.items():
        if kind not in KINDS:
            raise SpecError(f"{at}: labels.{label}: validator one of {sorted(KINDS)}")
    try:
        target = Template.parse(raw.get("target", rb_id), kinds, "target")
    except SpecError as exc:
        raise SpecError(f"{at}: {exc}") from None
    steps = _steps(raw.get("steps"), kinds, at, "steps", required=True)
    resolve = _steps(raw.get("on_resolve", []), kinds, at, "on_resolve", required=False)
    if any(s.approval == "approve" for s in resolve):
        raise SpecError(f"{at}: on_resolve steps run unattended: approval must be auto")
    names = [s.name for s in (*steps, *resolve)]
    if len(names) != len(set(names)):
        raise SpecError(f"{at}: a step name is used twice")

    unconfirmed = _uncorroborated(raw.get("steps"), steps)

    def target_of(labels: Mapping[str, str], _params: Any) -> str:
        return target.render(checked_labels(labels, kinds, target.labels))

    return Runbook(
        id=rb_id,
        title=str(raw.get("title", rb_id))[:200],
        severity=severity,
        steps=steps,
        resolve_steps=resolve,
        target=target_of,
        page_first=raw.get("page_first", False) is True,
        source=where,
        warnings=lambda _params: unconfirmed,
    )


def _uncorroborated(raw: object, steps: tuple[Step, ...]) -> tuple[str, ...]:
    """A warning when an automatic change comes before any step that checks the
    alert's claim on the target: a forged or stale alert would be acted on (unless
    Prometheus corroborates it: targets.prometheus)."""
    assert isinstance(raw, list)
    for item, step in zip(raw, steps, strict=True):
        if item.get("corroborates") is True:
            return ()
        if step.mutates and step.approval == "auto":
            return (
                f"step {step.name!r} changes {step.needs[0] if step.needs else 'a target'}"
                " before any step checks the alert's claim (corroborates: true); without"
                " targets.prometheus a forged alert would be acted on",
            )
    return ()


def _steps(
    raw: object, kinds: Mapping[str, str], at: str, key: str, *, required: bool
) -> tuple[Step, ...]:
    if not isinstance(raw, list) or (required and not raw):
        raise SpecError(f"{at}: {key}: a list of steps")
    file = at.split(":", 1)[0]
    out = []
    for item in raw:
        line = item.get(LINE, "?") if isinstance(item, dict) else "?"
        out.append(_to_step(_step(item, kinds, f"{file}:{line}"), kinds))
    return tuple(out)


def load(path: str | Path, registry: Registry) -> list[str]:
    """Register every runbook in the YAML files under ``path``; the errors, file:line."""
    errors: list[str] = []
    if not Path(path).exists():
        return [f"{path}: no such file or directory"]
    for f in yaml_files(path):
        doc = read(f, errors)
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("runbooks"), list):
            errors.append(f"{f}:1: expected a mapping with a 'runbooks' list")
            continue
        for raw in doc["runbooks"]:
            try:
                runbook = _runbook(raw, f"{f}:{doc.get(LINE, 1)}")
            except SpecError as exc:
                errors.append(str(exc))
                continue
            if runbook.id in registry:
                errors.append(f"{f}:{raw.get(LINE, 1)}: runbook id {runbook.id!r} is already taken")
                continue
            registry.register(runbook)
    return errors


def registry_for(runbooks: str | None) -> tuple[Registry, list[str]]:
    """The built-in and plugin runbooks, plus the YAML ones under ``runbooks`` (the
    config key); the errors of the YAML files, file:line."""
    registry = load_entry_points()
    return registry, (load(runbooks, registry) if runbooks else [])
