"""RuleIndex returns exactly what a scan of every rule would, in declaration order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.engine.index import RuleIndex, alertname_keys
from remediator.engine.matchers import OPS, Matcher, Op, matches_all, parse_matcher, parse_matchers


@dataclass(frozen=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]


def rule(name: str, *matchers: str) -> Rule:
    return Rule(name, parse_matchers(matchers))


def names(rules: Sequence[Rule]) -> list[str]:
    return [r.name for r in rules]


def scan(rules: Sequence[Rule], labels: dict[str, str]) -> list[Rule]:
    return [r for r in rules if matches_all(r.matchers, labels)]


# --- brute-force equivalence -----------------------------------------------------------

ALERTNAMES = ["A", "B", "C", ""]
VALUES = {
    "alertname": ALERTNAMES,
    "severity": ["page", "critical", "info", ""],
    "team": ["db", "web", ""],
}
REGEXES = {
    "alertname": ["A|B", "A|", "C", "A.*", "(?i)a", "A|(B)", "[AB]", ".*", "A|B|A", "|"],
    "severity": ["page|critical", ".+", "(?i)PAGE", ""],
    "team": ["d.", "web|", ".*"],
}


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    name = draw(st.sampled_from(sorted(VALUES)))
    op = draw(st.sampled_from(OPS))
    pool = REGEXES[name] if op in ("=~", "!~") else VALUES[name]
    return Matcher(name, op, draw(st.sampled_from(pool)))


rule_lists = st.lists(
    st.builds(Rule, st.just("r"), st.lists(matchers(), max_size=4).map(tuple)),
    max_size=300,
).map(lambda rs: [Rule(f"r{i}", r.matchers) for i, r in enumerate(rs)])
label_sets = st.dictionaries(
    st.sampled_from(sorted(VALUES)), st.sampled_from([*ALERTNAMES, "page", "db", "x"])
)


@settings(max_examples=150, deadline=None)
@given(rules=rule_lists, labels=st.lists(label_sets, min_size=1, max_size=20))
def test_select_equals_a_scan_of_all_rules(rules: list[Rule], labels: list[dict[str, str]]) -> None:
    index = RuleIndex(rules)
    assert len(index) == len(rules)
    for ls in labels:
        assert index.select(ls) == scan(rules, ls)
        assert index.matches_any(ls) is bool(scan(rules, ls))


def test_select_equals_a_scan_on_a_large_random_rule_set() -> None:
    rnd = random.Random(7)

    def random_matcher() -> Matcher:
        name = rnd.choice(sorted(VALUES))
        op = rnd.choice(OPS)
        pool = REGEXES[name] if op in ("=~", "!~") else VALUES[name]
        return Matcher(name, op, rnd.choice(pool))

    def random_rule(i: int) -> Rule:
        ms = [random_matcher() for _ in range(rnd.randint(0, 3))]
        if rnd.random() < 0.5:  # most real rules name their alert
            op: Op = rnd.choice(["=", "=~"])
            pool = REGEXES["alertname"] if op == "=~" else ALERTNAMES
            ms.insert(0, Matcher("alertname", op, rnd.choice(pool)))
        return Rule(f"r{i}", tuple(ms))

    rules = [random_rule(i) for i in range(400)]
    labels = [
        {k: rnd.choice([*v, "x"]) for k, v in VALUES.items() if rnd.random() < 0.8}
        for _ in range(300)
    ]
    index = RuleIndex(rules)
    selected = [index.select(ls) for ls in labels]
    assert selected == [scan(rules, ls) for ls in labels]
    assert [index.matches_any(ls) for ls in labels] == [bool(s) for s in selected]
    # Not vacuous: many alerts match something, and many rules were bucketed.
    assert sum(1 for s in selected if s) > 200
    assert sum(1 for r in rules if alertname_keys(r.matchers) is not None) > 100


# --- specific behaviour ----------------------------------------------------------------


def test_rules_without_alertname_matchers_are_still_found() -> None:
    rules = [
        rule("by-name", 'alertname="A"'),
        rule("by-severity", 'severity="page"'),
        rule("not-b", 'alertname!="B"'),
        rule("any-regex", 'alertname=~"A.*"'),
        rule("no-matchers"),
    ]
    index = RuleIndex(rules)
    assert names(index.select({"alertname": "Zed", "severity": "page"})) == [
        "by-severity",
        "not-b",
        "no-matchers",
    ]
    assert names(index.select({"alertname": "A1"})) == ["not-b", "any-regex", "no-matchers"]


def test_declaration_order_is_kept_across_buckets_and_wildcards() -> None:
    rules = [
        rule("w1", 'severity=~".*"'),
        rule("a1", 'alertname="A"'),
        rule("w2", 'team!="x"'),
        rule("ab", 'alertname=~"A|B"'),
        rule("a2", 'alertname="A"', 'severity=""'),
        rule("w3"),
    ]
    index = RuleIndex(rules)
    assert names(index.select({"alertname": "A"})) == ["w1", "a1", "w2", "ab", "a2", "w3"]
    assert names(index.select({"alertname": "B"})) == ["w1", "w2", "ab", "w3"]
    assert names(index.select({"alertname": "A", "severity": "page"})) == [
        "w1",
        "a1",
        "w2",
        "ab",
        "w3",
    ]


def test_literal_alternation_is_found_under_each_alternative_once() -> None:
    index = RuleIndex([rule("abc", 'alertname=~"A|B|C|A"')])
    for name in ("A", "B", "C"):
        assert names(index.select({"alertname": name})) == ["abc"]
    assert index.select({"alertname": "D"}) == []
    assert index.select({"alertname": "A|B"}) == []


def test_absent_alertname_selects_rules_for_the_empty_name() -> None:
    rules = [
        rule("empty", 'alertname=""'),
        rule("maybe", 'alertname=~"A|"'),
        rule("a", 'alertname="A"'),
    ]
    assert names(RuleIndex(rules).select({"severity": "page"})) == ["empty", "maybe"]


def test_all_other_matchers_are_still_applied() -> None:
    index = RuleIndex([rule("a-page", 'alertname="A"', 'severity="page"')])
    assert index.select({"alertname": "A", "severity": "info"}) == []
    assert names(index.select({"alertname": "A", "severity": "page"})) == ["a-page"]


def test_the_same_rule_twice_is_returned_twice_like_a_scan() -> None:
    r = rule("a", 'alertname="A"')
    assert RuleIndex([r, r]).select({"alertname": "A"}) == [r, r]


def test_empty_index() -> None:
    index: RuleIndex[Rule] = RuleIndex([])
    assert len(index) == 0
    assert index.select({"alertname": "A"}) == []
    assert index.matches_any({"alertname": "A"}) is False


@pytest.mark.parametrize(
    ("texts", "keys"),
    [
        (['alertname="A"'], {"A"}),
        (['alertname=""'], {""}),
        (['alertname=~"A|B"'], {"A", "B"}),
        (['alertname=~"A|"'], {"A", ""}),
        (['alertname=~"Disk Full|db:down-1"'], {"Disk Full", "db:down-1"}),
        (['alertname=~"A|B"', 'alertname="B"'], {"B"}),  # equality wins: it is tighter
        (['severity="page"', 'alertname="A"'], {"A"}),
        (['alertname=~"A.*"'], None),
        (['alertname=~"A|(B)"'], None),
        (['alertname=~"(?i)a"'], None),
        (['alertname=~"A\\\\.B"'], None),
        (['alertname!="A"'], None),
        (['alertname!~"A|B"'], None),
        (['severity="page"'], None),
        ([], None),
    ],
)
def test_alertname_keys(texts: list[str], keys: set[str] | None) -> None:
    got = alertname_keys([parse_matcher(t) for t in texts])
    assert got == (None if keys is None else frozenset(keys))


class CountingRule:
    """A rule type of a caller's own: counts how often the index reads its matchers."""

    def __init__(self, *texts: str) -> None:
        self._matchers = parse_matchers(texts)
        self.reads = 0

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        self.reads += 1
        return self._matchers


def test_select_reads_only_the_bucket_and_the_wildcards() -> None:
    others = [CountingRule(f'alertname="N{i}"') for i in range(200)]
    mine = CountingRule('alertname="A"')
    wildcard = CountingRule('severity="page"')
    index = RuleIndex([*others, mine, wildcard])
    for r in (*others, mine, wildcard):
        r.reads = 0
    assert index.select({"alertname": "A", "severity": "page"}) == [mine, wildcard]
    assert all(r.reads == 0 for r in others)
    assert mine.reads > 0 and wildcard.reads > 0


def test_matches_any_reads_only_the_bucket_and_the_wildcards_and_stops_at_a_match() -> None:
    others = [CountingRule(f'alertname="N{i}"') for i in range(200)]
    first = CountingRule('alertname="A"')
    second = CountingRule('alertname="A"')
    wildcard = CountingRule('severity="page"')
    index = RuleIndex([*others, first, second, wildcard])
    for r in (*others, first, second, wildcard):
        r.reads = 0
    assert index.matches_any({"alertname": "A", "severity": "page"}) is True
    assert first.reads > 0
    assert all(r.reads == 0 for r in (*others, second, wildcard))
    assert index.matches_any({"alertname": "B", "severity": "info"}) is False
    assert wildcard.reads > 0 and all(r.reads == 0 for r in others)
