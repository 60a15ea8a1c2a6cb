"""Rule files: which alerts run which runbook, with what params and limits.

Loading validates everything and reports every problem with file:line, like
``promtool check rules``: bad matcher syntax, unknown runbook, params that the
runbook's parameter model refuses, duplicate names, unknown keys. A rule set is
either wholly valid or not loaded at all (reload keeps the old set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from remediator.engine.index import RuleIndex
from remediator.engine.matchers import Matcher, MatcherSyntaxError, parse_matcher
from remediator.runbook_api.registry import Registry
from remediator.settings import parse_duration
from remediator.yaml_lines import read, yaml_files

_KEYS = {
    "name",
    "matchers",
    "runbook",
    "params",
    "mode",
    "cooldown",
    "max_runs_per_hour",
    "max_targets",
    "max_duration",
    "description",
    "verify",
}


@dataclass(frozen=True)
class BlastRadius:
    """At most ``count`` distinct targets mutated by one rule per ``per`` seconds."""

    count: int
    per: float


# An alert label in a verify query: the whole quoted token becomes an escaped PromQL
# string (engine/verify.py), so a label value cannot change the query's shape.
LABEL_PLACEHOLDER = re.compile(r'"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}"')


@dataclass(frozen=True)
class Verify:
    """After the mitigation, Prometheus must show ``query`` true within ``within`` s."""

    query: str
    within: float
    on_failure: Literal["page", "undo"] = "page"


@dataclass(frozen=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]
    runbook: str
    params: BaseModel
    mode: Literal["dry-run", "live"] | None
    cooldown: float
    max_runs_per_hour: int | None
    source: str  # file:line, for messages
    max_targets: BlastRadius | None = None
    # Temporary mitigations still in place this long after the run are undone.
    max_duration: float | None = None
    verify: Verify | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class RuleSet:
    def __init__(self, rules: list[Rule], sources: list[str]) -> None:
        self.rules = rules
        self.sources = sources
        self._index = RuleIndex(rules)
        self.alertnames = frozenset(
            m.value for r in rules for m in r.matchers if m.name == "alertname" and m.op == "="
        )

    def select(self, labels: Mapping[str, str]) -> list[Rule]:
        return self._index.select(labels)

    def routes(self, labels: Mapping[str, str]) -> bool:
        """Whether any rule selects these labels."""
        return self._index.matches_any(labels)

    def get(self, name: str) -> Rule | None:
        for r in self.rules:
            if r.name == name:
                return r
        return None

    def __len__(self) -> int:
        return len(self.rules)


def _parse_rule(raw: Any, where: str, registry: Registry, errors: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: a rule must be a mapping")
        return None
    line = raw.pop("__line__", None)
    at = f"{where.rsplit(':', 1)[0]}:{line}" if line else where
    before = len(errors)
    for key in sorted(set(raw) - _KEYS):
        errors.append(f"{at}: unknown key {key!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{at}: name is required")
        name = "?"
    matchers: list[Matcher] = []
    raw_matchers = raw.get("matchers")
    if not isinstance(raw_matchers, list) or not raw_matchers:
        errors.append(f"{at}: rule {name!r}: matchers must be a non-empty list")
    else:
        for text in raw_matchers:
            if not isinstance(text, str):
                errors.append(f"{at}: rule {name!r}: matcher {text!r} must be a string")
                continue
            try:
                matchers.append(parse_matcher(text))
            except MatcherSyntaxError as exc:
                errors.append(f"{at}: rule {name!r}: bad matcher {text!r}: {exc}")
    runbook_id = raw.get("runbook")
    runbook = registry.get(runbook_id) if isinstance(runbook_id, str) else None
    if runbook is None:
        errors.append(
            f"{at}: rule {name!r}: unknown runbook {runbook_id!r}"
            f" (known: {', '.join(registry.ids()) or 'none'})"
        )
    params_raw = raw.get("params") or {}
    params: BaseModel | None = None
    if not isinstance(params_raw, dict):
        errors.append(f"{at}: rule {name!r}: params must be a mapping")
    elif runbook is not None:
        params_raw = {k: v for k, v in params_raw.items() if k != "__line__"}
        try:
            params = runbook.params.model_validate(params_raw)
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_input=False):
                key = ".".join(str(p) for p in e["loc"])
                msg = "unknown parameter" if e["type"] == "extra_forbidden" else e["msg"]
                errors.append(f"{at}: rule {name!r}: params.{key}: {msg}")
    mode = raw.get("mode")
    if mode is not None and mode not in ("dry-run", "live"):
        errors.append(f"{at}: rule {name!r}: mode must be dry-run or live")
    cooldown = 0.0
    if raw.get("cooldown") is not None:
        try:
            cooldown = parse_duration(raw["cooldown"])
        except ValueError as exc:
            errors.append(f"{at}: rule {name!r}: cooldown: {exc}")
    mrph = raw.get("max_runs_per_hour")
    if mrph is not None and (isinstance(mrph, bool) or not isinstance(mrph, int) or mrph < 1):
        errors.append(f"{at}: rule {name!r}: max_runs_per_hour must be a positive integer")
    max_targets = _parse_max_targets(raw.get("max_targets"), f"{at}: rule {name!r}", errors)
    max_duration: float | None = None
    if raw.get("max_duration") is not None:
        try:
            max_duration = parse_duration(raw["max_duration"])
        except ValueError as exc:
            errors.append(f"{at}: rule {name!r}: max_duration: {exc}")
        else:
            if max_duration <= 0:
                errors.append(f"{at}: rule {name!r}: max_duration must be positive")
    verify = _parse_verify(raw.get("verify"), at, name, errors)
    if len(errors) > before or params is None:
        return None
    return Rule(
        name=name,
        matchers=tuple(matchers),
        runbook=str(runbook_id),
        params=params,
        mode=mode,
        cooldown=cooldown,
        max_runs_per_hour=mrph,
        source=at,
        max_targets=max_targets,
        max_duration=max_duration,
        verify=verify,
    )


def _parse_verify(raw: Any, at: str, name: str, errors: list[str]) -> Verify | None:
    if raw is None:
        return None
    where = f"{at}: rule {name!r}"
    if not isinstance(raw, dict):
        errors.append(f"{where}: verify must be a mapping {{query, within, on_failure}}")
        return None
    line = raw.get("__line__")
    if line:  # point at the verify block itself, not at the rule's first line
        where = f"{at.rsplit(':', 1)[0]}:{line}: rule {name!r}"
    raw = {k: v for k, v in raw.items() if k != "__line__"}
    before = len(errors)
    for key in sorted(set(raw) - {"query", "within", "on_failure"}):
        errors.append(f"{where}: verify: unknown key {key!r}")
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        errors.append(f"{where}: verify.query must be a non-empty PromQL expression")
    elif "{{" in LABEL_PLACEHOLDER.sub("", query):
        errors.append(
            f'{where}: verify.query: labels may appear only as "{{{{ $labels.NAME }}}}",'
            " quotes included"
        )
    within = 0.0
    if raw.get("within") is None:
        errors.append(f"{where}: verify.within is required (a duration, e.g. 15m)")
    else:
        try:
            within = parse_duration(raw["within"])
        except ValueError as exc:
            errors.append(f"{where}: verify.within: {exc}")
        else:
            if within <= 0:
                errors.append(f"{where}: verify.within must be positive")
    on_failure = raw.get("on_failure", "page")
    if on_failure not in ("page", "undo"):
        errors.append(f"{where}: verify.on_failure must be page or undo, not {on_failure!r}")
    if len(errors) > before:
        return None
    assert isinstance(query, str)
    return Verify(query=query.strip(), within=within, on_failure=on_failure)


def _parse_max_targets(raw: Any, where: str, errors: list[str]) -> BlastRadius | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.append(f"{where}: max_targets must be a mapping {{count: N, per: 1h}}")
        return None
    raw = {k: v for k, v in raw.items() if k != "__line__"}
    for key in sorted(set(raw) - {"count", "per"}):
        errors.append(f"{where}: max_targets: unknown key {key!r}")
    count = raw.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        errors.append(f"{where}: max_targets.count must be a positive integer")
        return None
    try:
        per = parse_duration(raw.get("per", "1h"))
    except ValueError as exc:
        errors.append(f"{where}: max_targets.per: {exc}")
        return None
    if per <= 0:
        errors.append(f"{where}: max_targets.per must be positive")
        return None
    return BlastRadius(count=count, per=per)


def load(path: str | Path, registry: Registry) -> tuple[RuleSet | None, list[str]]:
    """Parse every rule file under ``path``. Returns (rules, []) or (None, errors)."""
    errors: list[str] = []
    rules: list[Rule] = []
    files = yaml_files(path)
    if not Path(path).exists():
        return None, [f"{path}: no such file or directory"]
    seen: dict[str, str] = {}
    for f in files:
        doc = read(f, errors)
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
            errors.append(f"{f}:1: expected a mapping with a 'rules' list")
            continue
        for key in sorted(set(doc) - {"rules", "__line__"}):
            errors.append(f"{f}:{doc.get('__line__', 1)}: unknown top-level key {key!r}")
        for raw in doc["rules"]:
            rule = _parse_rule(raw, f"{f}:{doc.get('__line__', 1)}", registry, errors)
            if rule is None:
                continue
            if rule.name in seen:
                errors.append(
                    f"{rule.source}: duplicate rule name {rule.name!r}"
                    f" (first defined at {seen[rule.name]})"
                )
                continue
            seen[rule.name] = rule.source
            rules.append(rule)
    if errors:
        return None, errors
    return RuleSet(rules, [str(f) for f in files]), []
