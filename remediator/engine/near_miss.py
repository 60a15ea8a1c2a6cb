"""Why an alert matched no rule: the rules that came close, and the matchers that failed.

"No rule matches" leaves a user guessing; the README's own example once lacked a
``service`` label. A rule is close when the alert passes its ``alertname`` matchers
(the same alert, other labels differ), or, for a rule that names no alertname, when
the alert fails just one of its matchers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from remediator.engine.matchers import Matcher
from remediator.engine.rules import RuleSet


@dataclass(frozen=True, slots=True)
class NearMiss:
    rule: str
    source: str  # file:line of the rule
    failed: tuple[str, ...]  # one line per failed matcher, with the alert's value

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _why(m: Matcher, labels: Mapping[str, str]) -> str:
    if m.name not in labels:
        return f"{m} failed: the alert has no {m.name} label"
    return f'{m} failed: the alert has {m.name}="{labels[m.name]}"'


def near_misses(ruleset: RuleSet, labels: Mapping[str, str]) -> list[NearMiss]:
    found: list[NearMiss] = []
    for rule in ruleset.rules:
        failed = [m for m in rule.matchers if not m.matches(labels)]
        if not failed:
            continue
        by_name = [m for m in rule.matchers if m.name == "alertname"]
        if any(m in failed for m in by_name):
            continue  # another alert: never close, however many labels it shares
        if by_name or len(failed) == 1:
            found.append(NearMiss(rule.name, rule.source, tuple(_why(m, labels) for m in failed)))
    return found
