"""Pick the rules whose matchers accept an alert's labels without testing every rule.

A rule with ``alertname="X"`` can only match alerts named X, so it is filed under X; a
rule with ``alertname=~"X|Y"`` made of plain literals is filed under X and Y. Every
other rule goes to a wildcard list that is tested for every alert. ``select`` returns
exactly what a scan of all rules in declaration order would return: the index may
only skip rules that cannot match, never change the answer or its order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from remediator.engine.matchers import Matcher, matches_all

# Characters with a meaning in RE2 syntax; an alternative without any is a literal.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")


class HasMatchers(Protocol):
    @property
    def matchers(self) -> Sequence[Matcher]: ...


R = TypeVar("R", bound=HasMatchers)


def alertname_keys(matchers: Sequence[Matcher]) -> frozenset[str] | None:
    """The alertnames a rule can match, or None if the matchers do not pin them down."""
    for m in matchers:
        if m.name == "alertname" and m.op == "=":
            return frozenset({m.value})
    for m in matchers:
        if m.name == "alertname" and m.op == "=~":
            alternatives = m.value.split("|")
            if not any(_REGEX_META.intersection(a) for a in alternatives):
                return frozenset(alternatives)
    return None


class RuleIndex(Generic[R]):
    """Rules bucketed by alertname, plus the rules that must always be checked."""

    def __init__(self, rules: Iterable[R]) -> None:
        self._rules: list[R] = list(rules)
        self._by_name: dict[str, list[int]] = {}
        self._wildcard: list[int] = []
        for pos, rule in enumerate(self._rules):
            keys = alertname_keys(rule.matchers)
            if keys is None:
                self._wildcard.append(pos)
            else:
                for key in keys:
                    self._by_name.setdefault(key, []).append(pos)

    def select(self, labels: Mapping[str, str]) -> list[R]:
        """All rules matching ``labels``, in declaration order."""
        bucket = self._by_name.get(labels.get("alertname", ""), [])
        # Both lists hold ascending positions and never share one, so merging keeps order.
        positions = heapq.merge(bucket, self._wildcard) if bucket else self._wildcard
        return [
            self._rules[pos] for pos in positions if matches_all(self._rules[pos].matchers, labels)
        ]

    def matches_any(self, labels: Mapping[str, str]) -> bool:
        """``bool(select(labels))``, without building the list: the webhook asks this
        for every firing alert of a storm, and most of a storm matches no rule."""
        rules = self._rules
        for pos in self._by_name.get(labels.get("alertname", ""), ()):
            if matches_all(rules[pos].matchers, labels):
                return True
        # A loop, not any(genexpr): creating the generator cost as much as the whole
        # lookup when, as usual, there are no wildcard rules.
        for pos in self._wildcard:  # noqa: SIM110
            if matches_all(rules[pos].matchers, labels):
                return True
        return False

    def __len__(self) -> int:
        return len(self._rules)
