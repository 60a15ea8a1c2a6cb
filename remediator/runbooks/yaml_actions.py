"""The catalogue of built-in actions a YAML runbook step may use, one key per step.

    sql:          {query, binds, mutates, expect: any|rows|no_rows}
    provider_probe: {provider, expect: any|up|down}
    kube_scale:   {deployment, replicas}          (undo: the recorded replicas)
    kube_restart: {deployment}
    kube_job:     {deployment, argv}               (the Deployment's pod template)
    redis_read:   {keys, expect: any|present|absent}
    page:         {text}

Each spec is checked when the file is loaded and becomes a typed action
(``runbook_api.actions``) when the step runs or is planned, with its labels checked
by their declared validators. Labels reach SQL only as binds and Kubernetes only as
validated names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from remediator import validation
from remediator.errors import InputRejected
from remediator.runbook_api import actions
from remediator.runbook_api.actions import Action
from remediator.runbook_api.steps import KubeAccess, Need, Requirement, Statement
from remediator.runbooks.yaml_templates import SpecError, Template, bind_value
from remediator.validation.kubernetes import MAX_REPLICAS

ACTIONS = ("sql", "provider_probe", "kube_scale", "kube_restart", "kube_job", "redis_read", "page")
_BIND = re.compile(r"\$([0-9]+)")


@dataclass(frozen=True)
class BuildContext:
    """What an action needs besides its labels: where it acts, and for which run."""

    values: Mapping[str, str]  # the checked labels
    kinds: Mapping[str, str]
    namespace: str
    job_name: str  # a DNS label unique to the run and step


@dataclass(frozen=True)
class ActionSpec:
    name: str  # the catalogue key
    fields: Mapping[str, Any]
    templates: Mapping[str, Template]
    lists: Mapping[str, tuple[Template, ...]]

    @property
    def labels(self) -> frozenset[str]:
        found: set[str] = set()
        for t in self.templates.values():
            found |= t.labels
        for items in self.lists.values():
            for t in items:
                found |= t.labels
        return frozenset(found)

    @property
    def mutates(self) -> bool:
        if self.name == "sql":
            return bool(self.fields["mutates"])
        return self.name.startswith("kube_")

    @property
    def needs(self) -> Need | None:
        return _NEEDS.get(self.name)

    @property
    def undoable(self) -> bool:
        """It builds its own undo (the others need an explicit ``undo:`` or none)."""
        return self.name == "kube_scale"

    def requirements(self) -> tuple[Requirement, ...]:
        """What the action needs of its target, for ``doctor`` (no labels needed)."""
        if self.name == "sql":
            return (Statement(self.fields["query"], len(self.lists["binds"])),)
        return _KUBE_ACCESS.get(self.name, ())

    def build(self, ctx: BuildContext) -> Action:
        v, ns = ctx.values, ctx.namespace
        f = self.fields
        if self.name == "sql":
            binds = tuple(bind_value(t, v, ctx.kinds) for t in self.lists["binds"])
            return actions.Sql(f["query"], binds, f["mutates"], f["expect"], f["corroborates"])
        if self.name == "provider_probe":
            provider = self.templates["provider"].render(v)
            return actions.ProviderProbe(provider, f["expect"], f["corroborates"])
        if self.name == "redis_read":
            keys = tuple(t.render(v) for t in self.lists["keys"])
            return actions.RedisRead(keys, f["expect"], f["corroborates"])
        if self.name == "page":
            return actions.Note(validation.bounded_text(self.templates["text"].render(v), 2000))
        deployment = validation.k8s_name(self.templates["deployment"].render(v), field="deployment")
        if self.name == "kube_scale":
            return actions.KubeScale(deployment, int(f["replicas"]), ns)
        if self.name == "kube_restart":
            return actions.KubeRestart(deployment, ns)
        argv = tuple(t.render(v) for t in self.lists["argv"])
        name = validation.k8s_name(ctx.job_name, field="job")
        return actions.KubeJobFrom(name, deployment, argv, ns)


_FIELDS: dict[str, frozenset[str]] = {
    "sql": frozenset({"query", "binds", "mutates", "expect"}),
    "provider_probe": frozenset({"provider", "expect"}),
    "kube_scale": frozenset({"deployment", "replicas"}),
    "kube_restart": frozenset({"deployment"}),
    "kube_job": frozenset({"deployment", "argv"}),
    "redis_read": frozenset({"keys", "expect"}),
    "page": frozenset({"text"}),
}
_NEEDS: dict[str, Need] = {
    "sql": "database",
    "provider_probe": "http",
    "kube_scale": "kubernetes",
    "kube_restart": "kubernetes",
    "kube_job": "kubernetes",
    "redis_read": "cache",
}
_KUBE_ACCESS: dict[str, tuple[Requirement, ...]] = {
    "kube_scale": (
        KubeAccess("get", "deployments", "scale", "apps"),
        KubeAccess("patch", "deployments", "scale", "apps"),
    ),
    "kube_restart": (KubeAccess("patch", "deployments", group="apps"),),
    "kube_job": (
        KubeAccess("get", "deployments", group="apps"),
        KubeAccess("create", "jobs", group="batch"),
    ),
}
_EXPECT = {
    "sql": ("any", "rows", "no_rows"),
    "provider_probe": ("any", "up", "down"),
    "redis_read": ("any", "present", "absent"),
}


def parse(name: str, raw: object, kinds: Mapping[str, str], *, corroborates: bool) -> ActionSpec:
    """Check one action's fields; SpecError names the first problem."""
    if not isinstance(raw, dict):
        raise SpecError(f"{name}: expected a mapping")
    raw = {k: v for k, v in raw.items() if k != "__line__"}
    for key in sorted(set(raw) - _FIELDS[name]):
        raise SpecError(f"{name}: unknown key {key!r} (expected {sorted(_FIELDS[name])})")
    fields: dict[str, Any] = {"corroborates": corroborates}
    templates: dict[str, Template] = {}
    lists: dict[str, tuple[Template, ...]] = {}
    if name in _EXPECT:
        expect = raw.get("expect", "any")
        if expect not in _EXPECT[name]:
            raise SpecError(f"{name}.expect: one of {list(_EXPECT[name])}")
        if corroborates and expect == "any":
            raise SpecError(f"{name}: corroborates needs an expect other than 'any'")
        fields["expect"] = expect
    elif corroborates:
        raise SpecError(f"{name}: only sql, provider_probe and redis_read can corroborate")
    if name == "sql":
        _sql(raw, kinds, fields, lists)
    elif name == "redis_read":
        lists["keys"] = _list(raw, "keys", kinds, name, low=1, high=100)
    elif name == "kube_job":
        lists["argv"] = _list(raw, "argv", kinds, name, low=1, high=64)
    for key in ("provider", "deployment", "text"):
        if key in _FIELDS[name]:
            if key not in raw:
                raise SpecError(f"{name}: missing {key!r}")
            templates[key] = Template.parse(raw[key], kinds, f"{name}.{key}")
    if "deployment" in templates:
        _name_field(templates["deployment"], kinds, f"{name}.deployment", "k8s_name")
    if "provider" in templates:
        _name_field(templates["provider"], kinds, f"{name}.provider", "provider")
    if name == "kube_scale":
        replicas = raw.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise SpecError("kube_scale.replicas: expected an integer")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise SpecError(f"kube_scale.replicas: 0..{MAX_REPLICAS}")
        fields["replicas"] = replicas
    return ActionSpec(name, fields, templates, lists)


def _sql(
    raw: dict[str, Any],
    kinds: Mapping[str, str],
    fields: dict[str, Any],
    lists: dict[str, tuple[Template, ...]],
) -> None:
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise SpecError("sql.query: expected the statement as a string")
    if "{labels." in query:
        raise SpecError("sql.query: labels reach SQL only as binds ($1, $2 ...), never in the text")
    mutates = raw.get("mutates", False)
    if not isinstance(mutates, bool):
        raise SpecError("sql.mutates: expected true or false")
    binds = raw.get("binds", [])
    if not isinstance(binds, list):
        raise SpecError("sql.binds: expected a list")
    used = {int(n) for n in _BIND.findall(query)}
    if used != set(range(1, len(binds) + 1)):
        raise SpecError(
            f"sql: the query uses {sorted(used) or 'no'} placeholder(s) but {len(binds)}"
            " bind(s) are given"
        )
    lists["binds"] = tuple(Template.parse(b, kinds, f"sql.binds[{i}]") for i, b in enumerate(binds))
    fields["query"] = query
    fields["mutates"] = mutates


def _list(
    raw: dict[str, Any], key: str, kinds: Mapping[str, str], name: str, *, low: int, high: int
) -> tuple[Template, ...]:
    items = raw.get(key)
    if not isinstance(items, list) or not low <= len(items) <= high:
        raise SpecError(f"{name}.{key}: expected a list of {low}..{high} strings")
    return tuple(Template.parse(x, kinds, f"{name}.{key}[{i}]") for i, x in enumerate(items))


def _name_field(template: Template, kinds: Mapping[str, str], field: str, kind: str) -> None:
    """A name field is a constant that passes the check now, or one label of that kind."""
    label = template.single_label()
    if label is not None:
        if kinds[label] != kind:
            raise SpecError(f"{field}: label {label!r} must be declared as {kind}")
        return
    if template.labels:
        raise SpecError(f"{field}: a constant, or exactly one label of kind {kind}")
    text = template.render({})
    try:
        if kind == "k8s_name":
            validation.k8s_name(text, field=field)
        elif not validation.is_provider_name(text):
            raise InputRejected(field, f"{text!r} is not a provider name")
    except InputRejected as exc:
        raise SpecError(str(exc)) from None
