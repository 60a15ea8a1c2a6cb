"""Matcher parsing and matching, pinned to Alertmanager 0.25's behaviour.

The tables come from Alertmanager's own parse tests and from running amtool 0.25; the
last section runs amtool itself as the oracle over a corpus of matchers and values.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.engine.matchers import (
    Matcher,
    MatcherSyntaxError,
    matches_all,
    parse_matcher,
    parse_matchers,
)
from remediator.errors import RuleError

# --- parsing ---------------------------------------------------------------------------

VALID = [
    # (text, name, op, value)
    ('foo="bar"', "foo", "=", "bar"),
    ('foo!="bar"', "foo", "!=", "bar"),
    ('foo=~"ba.*"', "foo", "=~", "ba.*"),
    ('foo!~"ba.*"', "foo", "!~", "ba.*"),
    ("foo=bar", "foo", "=", "bar"),
    ("foo!=bar", "foo", "!=", "bar"),
    ("foo=~ba.+", "foo", "=~", "ba.+"),
    ("foo!~ba.+", "foo", "!~", "ba.+"),
    ('  foo  =  "bar"  ', "foo", "=", "bar"),
    ('foo =~ "x"', "foo", "=~", "x"),
    ("\tfoo\t!=\tbar\t", "foo", "!=", "bar"),
    ("foo= bar baz ", "foo", "=", "bar baz"),
    ('foo=" bar "', "foo", "=", " bar "),
    ("foo=bar\u00a0", "foo", "=", "bar"),  # Unicode spaces at the ends: TrimSpace
    ('foo="a\\"b"', "foo", "=", 'a"b'),
    ('foo="a\\\\b"', "foo", "=", "a\\b"),
    ('foo="a\\nb"', "foo", "=", "a\nb"),
    ('foo="a\\qb"', "foo", "=", "a\\qb"),  # a spurious escape keeps its backslash
    ("foo=a\\", "foo", "=", "a\\"),  # so does a trailing one
    ('foo="line\nfeed"', "foo", "=", "line\nfeed"),
    ('foo=""', "foo", "=", ""),
    ("foo=", "foo", "=", ""),
    ("foo!=", "foo", "!=", ""),
    ("foo=~", "foo", "=~", ""),
    ("tricky=~~~", "tricky", "=~", "~~"),
    ('trickier==\\\\=\\=\\"', "trickier", "=", '=\\=\\="'),
    ('contains_quote != "\\"" ', "contains_quote", "!=", '"'),
    ('quote="She said: \\"Hi, ladies!\\""', "quote", "=", 'She said: "Hi, ladies!"'),
    ('foo="a,b}"', "foo", "=", "a,b}"),
    ("_a=b", "_a", "=", "b"),
    (":a=b", ":a", "=", "b"),
    ("a:b_C1=d", "a:b_C1", "=", "d"),
    ("foo=é☺", "foo", "=", "é☺"),
]


@pytest.mark.parametrize(("text", "name", "op", "value"), VALID, ids=[v[0] for v in VALID])
def test_parse_valid(text: str, name: str, op: str, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.op, m.value) == (name, op, value)


INVALID = [
    # (text, 1-based column, words the reason must contain)
    ("", 1, "expected a label name"),
    ("   ", 4, "expected a label name"),
    ("1a=b", 1, "expected a label name"),
    ("=b", 1, "expected a label name"),
    ('"foo"="bar"', 1, "expected a label name"),
    ("é=a", 1, "expected a label name"),
    ('foo-bar="x"', 4, "expected one of =, !=, =~, !~"),
    ("foo", 4, "expected one of =, !=, =~, !~"),
    ('foo~="x"', 4, "expected one of =, !=, =~, !~"),
    ("foo ~= x", 5, "expected one of =, !=, =~, !~"),
    ('foo =! "x"', 8, "unquoted value"),  # "=" then the value '! "x"', as in Alertmanager
    ('foo="bar', 5, 'expected a closing "'),
    ('foo="', 5, 'expected a closing "'),
    ('foo="bar\\"', 5, 'expected a closing "'),
    ('foo=bar"', 8, "unquoted value"),
    ('foo=="bar"', 6, "unquoted value"),
    ('foo="a"b"', 7, "inside a quoted value"),
    ('foo="x" y', 7, "inside a quoted value"),
    ('foo=~"a["', 8, "missing closing ]"),
    ("foo=~a[", 7, "missing closing ]"),
    ('foo=~"(a"', 7, "missing closing )"),
    ('foo=~"a)|(b"', 8, "unexpected )"),
]


@pytest.mark.parametrize(("text", "position", "reason"), INVALID, ids=[v[0] for v in INVALID])
def test_parse_invalid_names_position_and_expectation(
    text: str, position: int, reason: str
) -> None:
    with pytest.raises(MatcherSyntaxError) as info:
        parse_matcher(text)
    assert info.value.text == text
    assert info.value.position == position
    assert reason in info.value.reason
    assert f"column {position}" in str(info.value)


BAD_REGEX = [
    # Go's RE2 refuses these (amtool 0.25 check-config says so); Python's re would not.
    ("(?=x)", "lookahead"),
    ("(?!x)", "lookahead"),
    ("(?<=x)", "lookbehind"),
    ("(?<!x)", "lookbehind"),
    ("(?P=n)", "backreferences"),
    ("(a)\\1", "backreferences"),
    ("(?>a)", "atomic"),
    ("(?#c)", "comments"),
    ("(?x)a", "flags i, m, s, U"),
    ("(?<n>a)", "(?P<name>...)"),
    ("a*+", "nested repetition"),
    ("a**", "nested repetition"),
    ("a{2}{3}", "nested repetition"),
    ("x*??", "nested repetition"),
    ("\\Z", "\\z"),
    ("x{1001}", "invalid repeat count"),
    ("x{5,1001}", "invalid repeat count"),
    ("x{2,1}", "invalid repeat count"),
    ("(x{500}){3}", "invalid repeat count"),
    ("(a{2}|b{600}){2}", "invalid repeat count"),
    ("[[:foo:]]", "invalid character class range"),
    ("[z-a]", "invalid character class range"),
    ("[a-\\d]", "invalid escape"),
    ("[\\b]", "invalid escape"),
    ("\\8", "invalid escape"),
    ("\\C", "invalid escape"),
    ("\\u0041", "invalid escape"),
    ("\\x{110000}", "invalid escape"),
    ("\\x4", "invalid escape"),
    ("(?P<a-b>x)", "invalid named capture"),
    ("(?P<>x)", "invalid named capture"),
    ("(?i-)", "Perl syntax"),
    ("(?--i)x", "Perl syntax"),
    ("*", "missing argument"),
    ("a|*", "missing argument"),
    ("\\Qa.b", "\\E"),  # the \Q quotes the anchoring ")" away, as in Alertmanager
    ("a)|(b", "unexpected )"),  # Go accepts it and matches unanchored; we refuse
]


@pytest.mark.parametrize(("regex", "reason"), BAD_REGEX, ids=[v[0] for v in BAD_REGEX])
@pytest.mark.parametrize("op", ["=~", "!~"])
def test_regex_that_alertmanager_would_refuse_is_rejected_with_reason(
    op: str, regex: str, reason: str
) -> None:
    text = f"a{op}{regex}"
    with pytest.raises(MatcherSyntaxError) as info:
        parse_matcher(text)
    assert reason in info.value.reason
    assert "invalid regular expression" in info.value.reason


def test_regex_error_position_points_into_an_unescaped_value() -> None:
    with pytest.raises(MatcherSyntaxError) as info:
        parse_matcher('job=~"api|(?=x)"')
    assert info.value.position == len('job=~"api|') + 1


def test_equality_values_are_not_regexes() -> None:
    m = parse_matcher('a="(?=x)["')
    assert m.matches({"a": "(?=x)["})
    assert not m.is_regex


def test_matcher_syntax_error_is_in_the_error_tree_and_a_value_error() -> None:
    with pytest.raises(MatcherSyntaxError) as info:
        parse_matcher("1=2")
    assert isinstance(info.value, RuleError)
    assert isinstance(info.value, ValueError)


# --- regex semantics -------------------------------------------------------------------

REGEX_CASES = [
    # (regex, values it matches, values it must not match)
    ("foo", ["foo"], ["foobar", "xfoo", "foo\n", "", "FOO"]),
    ("a|ab", ["a", "ab"], ["abc", "b"]),
    ("5..", ["500", "503"], ["5000", "50"]),
    ("ba.*", ["ba", "bar", "barn"], ["xbar", "ba\nr"]),
    ("(?s)a.b", ["a\nb", "axb"], ["ab"]),
    ("(?i)critical", ["critical", "CRITICAL", "Critical"], ["critical!"]),
    ("(?i)page|warn", ["PAGE", "WARN"], ["info"]),  # a flag holds across "|"
    ("a(?i)b|c", ["ab", "aB", "c", "C"], ["Ab"]),
    ("((?i)a)b", ["ab", "Ab"], ["aB"]),
    ("a(?i:b)c", ["abc", "aBc"], ["abC"]),
    ("(?i)a(?-i)b", ["ab", "Ab"], ["aB"]),
    ("\\d+", ["0", "123"], ["\u0661٢", "1a", ""]),  # \d is ASCII in RE2
    ("\\w+", ["a_1"], ["é", "a-b"]),
    ("\\s", [" ", "\t", "\n"], ["\v", "\u00a0"]),
    ("\\S+", ["ab", "\u00a0"], ["a b"]),
    ("[\\D]", ["a", "\u0661"], ["1"]),
    ("[a\\S]", ["a", "x"], [" "]),
    ("[^a\\W]", ["b", "_"], ["a", "-"]),
    ("[[:alpha:]]+", ["abcXYZ"], ["ab1", "é"]),
    ("[^[:digit:]]", ["a", "\n"], ["7"]),
    ("[[:^alpha:]x]", ["1", "x"], ["a"]),
    ("[]a]", ["]", "a"], ["b"]),
    ("[a-]", ["a", "-"], ["b"]),
    ("[&&~~||-]", ["&", "~", "|", "-"], ["a"]),  # no Python set operations here
    ("\\Qa.b\\E", ["a.b"], ["axb"]),
    ("\\Qa|b\\E", ["a|b"], ["a", "b"]),
    ("\\x{263a}", ["☺"], ["☻"]),
    ("[\\x{263a}-\\x{263b}]", ["☺", "☻"], ["☼"]),
    ("\\x41\\101", ["AA"], ["aa"]),
    ("\\12", ["\n"], ["\\12"]),  # two-digit octal, not a backreference
    ("a{,2}", ["a{,2}"], ["aa", ""]),  # not a repetition in Go: literal text
    ("a{01}", ["a{01}"], ["a"]),
    ("a{2}", ["aa"], ["a", "aaa"]),
    ("x{1000}", ["x" * 1000], ["x" * 999]),
    ("a{2}?b", ["aab"], ["ab"]),
    ("\\bfoo\\b", ["foo"], ["foo_"]),
    ("\\A\\B", [""], []),  # Go's \B holds in an empty string, Python's does not
    ("foo$", ["foo"], ["foo\n"]),
    ("(?m)foo$\\n", ["foo\n"], ["foo"]),
    ("\\Afoo\\z", ["foo"], ["foo\n"]),
    ("(?U)a+", ["aaa"], [""]),
    ("^*a", ["a"], [""]),
    ("a(?i)*", ["", "aaa"], ["A"]),
    ("(?P<n>a)(?P<n>b)", ["ab"], ["a"]),
    ("(?)a", ["a"], ["A"]),
    ("\\pL+", ["a", "é", "αβ"], ["1", "a1"]),  # Unicode classes, as in Go
    ("\\p{Greek}", ["\u03b1"], ["a"]),
    ("(a+)+b", ["aab"], ["a" * 100_000]),  # RE2 runs in linear time: no backtracking
    ("", [""], ["a"]),
]


@pytest.mark.parametrize(("regex", "yes", "no"), REGEX_CASES, ids=[repr(c[0]) for c in REGEX_CASES])
def test_regex_matching_follows_go_semantics(regex: str, yes: list[str], no: list[str]) -> None:
    m = Matcher("a", "=~", regex)
    n = Matcher("a", "!~", regex)
    for value in yes:
        assert m.matches({"a": value}), value
        assert not n.matches({"a": value}), value
    for value in no:
        assert not m.matches({"a": value}), value
        assert n.matches({"a": value}), value


def test_regex_is_anchored_at_both_ends() -> None:
    m = parse_matcher('a=~"foo"')
    assert m.matches({"a": "foo"})
    assert not m.matches({"a": "foobar"})
    assert not m.matches({"a": "barfoo"})


# --- matching semantics ----------------------------------------------------------------

ABSENT = [
    # (matcher, matches {} (label absent), matches {"foo": ""}, matches {"foo": "x"})
    ('foo=""', True, True, False),
    ('foo!=""', False, False, True),
    ('foo="x"', False, False, True),
    ('foo!="x"', True, True, False),
    ('foo=~".*"', True, True, True),
    ('foo=~".+"', False, False, True),
    ('foo!~".+"', True, True, False),
    ('foo!~"x"', True, True, False),
    ('foo=~"x|"', True, True, True),
]


@pytest.mark.parametrize(("text", "absent", "empty", "x"), ABSENT, ids=[a[0] for a in ABSENT])
def test_absent_label_counts_as_empty_string(text: str, absent: bool, empty: bool, x: bool) -> None:
    m = parse_matcher(text)
    assert m.matches({"other": "x"}) is absent
    assert m.matches({"foo": ""}) is empty
    assert m.matches({"foo": "x"}) is x


def test_matches_all_requires_every_matcher() -> None:
    ms = parse_matchers(['alertname="A"', 'severity=~"page|critical"', 'team!="db"'])
    assert isinstance(ms, tuple)
    assert matches_all(ms, {"alertname": "A", "severity": "page"})
    assert not matches_all(ms, {"alertname": "A", "severity": "page", "team": "db"})
    assert not matches_all(ms, {"alertname": "A", "severity": "info"})
    assert matches_all((), {})


def test_parse_matchers_reports_the_bad_string() -> None:
    with pytest.raises(MatcherSyntaxError) as info:
        parse_matchers(['a="b"', "c~d"])
    assert info.value.text == "c~d"


# --- the Matcher value -----------------------------------------------------------------

STR_CASES = [
    (Matcher("a", "=", "b"), 'a="b"'),
    (Matcher("a", "!=", ""), 'a!=""'),
    (Matcher("a", "=~", "x|y"), 'a=~"x|y"'),
    (Matcher("a", "!~", "\\d+"), 'a!~"\\\\d+"'),
    (Matcher("a", "=", 'say "hi"\nnow\\'), 'a="say \\"hi\\"\\nnow\\\\"'),
]


@pytest.mark.parametrize(("matcher", "text"), STR_CASES, ids=[t for _, t in STR_CASES])
def test_str_is_canonical_and_round_trips(matcher: Matcher, text: str) -> None:
    assert str(matcher) == text
    assert parse_matcher(text) == matcher


label_values = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    name=st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,8}", fullmatch=True),
    op=st.sampled_from(["=", "!="]),
    value=label_values,
)
def test_str_round_trips_any_equality_value(name: str, op: str, value: str) -> None:
    m = Matcher(name, op, value)  # type: ignore[arg-type]
    assert parse_matcher(str(m)) == m


@settings(max_examples=200, deadline=None)
@given(
    op=st.sampled_from(["=~", "!~"]),
    value=st.lists(st.sampled_from(["a", "\\d", '"', "\\\\", "\n", " ", ".*", "é", "[x]"])).map(
        "".join
    ),
)
def test_str_round_trips_regex_values(op: str, value: str) -> None:
    m = Matcher("job", op, value)  # type: ignore[arg-type]
    assert parse_matcher(str(m)) == m


@pytest.mark.parametrize(
    ("name", "op", "value"),
    [("1a", "=", "x"), ("a-b", "=", "x"), ("a", "==", "x"), ("a", "=~", "("), ("a", "=", "\ud800")],
)
def test_direct_construction_validates(name: str, op: str, value: str) -> None:
    with pytest.raises(MatcherSyntaxError):
        Matcher(name, op, value)  # type: ignore[arg-type]


def test_equality_and_hash_ignore_the_compiled_pattern() -> None:
    a = parse_matcher('a=~"x.*"')
    b = Matcher("a", "=~", "x.*")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Matcher("a", "!~", "x.*")}) == 2
    assert "_pattern" not in repr(a)


def test_to_api_uses_alertmanager_flags() -> None:
    assert [parse_matcher(t).to_api() for t in ['a="1"', 'a!="1"', 'a=~"1"', 'a!~"1"']] == [
        {"name": "a", "value": "1", "isRegex": False, "isEqual": True},
        {"name": "a", "value": "1", "isRegex": False, "isEqual": False},
        {"name": "a", "value": "1", "isRegex": True, "isEqual": True},
        {"name": "a", "value": "1", "isRegex": True, "isEqual": False},
    ]


# --- amtool 0.25 as the oracle ---------------------------------------------------------


def _shared_conftest(config: pytest.Config) -> ModuleType:
    root = (Path(__file__).parents[1] / "conftest.py").resolve()
    for plugin in config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and path and Path(path).resolve() == root:
            return plugin
    raise RuntimeError(f"{root} is not loaded as a pytest plugin")


@pytest.fixture
def amtool(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[list[str], list[str], list[str]], subprocess.CompletedProcess[str]]:
    """Run amtool over a generated config; missing amtool skips (fails when required)."""
    exe = shutil.which("amtool")
    if exe is None:
        _shared_conftest(request.config).service_missing(
            "amtool", FileNotFoundError("amtool (prometheus-alertmanager 0.25) is not on PATH")
        )
    assert exe is not None
    counter = iter(range(10**6))

    def run(
        before: list[str], matchers: list[str], after: list[str]
    ) -> subprocess.CompletedProcess[str]:
        """amtool BEFORE... CONFIG AFTER..., CONFIG having one route per matcher."""
        # One route per matcher, each with its own receiver and continue: true, so one
        # routing test reports every matcher that accepts the labels.
        cfg = {
            "route": {
                "receiver": "none",
                "routes": [
                    {"receiver": f"r{k}", "continue": True, "matchers": [m]}
                    for k, m in enumerate(matchers)
                ],
            },
            "receivers": [{"name": "none"}] + [{"name": f"r{k}"} for k in range(len(matchers))],
        }
        path = tmp_path / f"am{next(counter)}.yml"
        path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
        cmd = [exe, *before, str(path), *after]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    return run


def _am_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _one_matcher_in_a_route(text: str) -> bool:
    # A route's entry goes through ParseMatchers, which splits on commas and trims
    # braces; such strings are not single matchers there.
    s = text.strip()
    return bool(s) and "," not in text and not s.startswith("{") and not s.endswith("}")


def _random_regexes(n: int) -> list[str]:
    rnd = random.Random(20250101)
    tokens = [
        "a", "b", "A", "k", "K", "\u017f", ".", "|", "|", "(", ")", "(?:", "(?i)", "(?i:", "(?-i)",
        "(?s)", "(?m)", "(?U)", "*", "+", "?", "*?", "{2}", "{0,1}", "{1,}", "{,2}", "{01}",
        "[", "]", "[^", "^", "-", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\b", "\\B", "$",
        "\\n", "\n", "[:alpha:]", "[:^digit:]", "\\.", "\\Q", "\\E", "\\z", "\\A", " ", "{",
        "}", "\\x41", "\\101", "\\12", "\\x{263a}", "☺", "\\-", "\\]", "\\[", "\\\\", "&&",
        "~~", "--", "(?P<n>",
    ]  # fmt: skip
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rnd.choice(tokens) for _ in range(rnd.randint(1, 7))))
    return sorted(out)


ORACLE_MATCHERS = [
    *(f'a=~"{_am_escape(r)}"' for r, _, _ in REGEX_CASES),
    *(f'a=~"{_am_escape(r)}"' for r, _ in BAD_REGEX),
    *(t for t, *_ in VALID),
    *(t for t, *_ in INVALID),
    *(t for t, *_ in ABSENT),
    *(f'a=~"{_am_escape(r)}"' for r in _random_regexes(150)),
]
ORACLE_VALUES = sorted(
    {v for _, yes, no in REGEX_CASES for v in yes + no if len(v) < 50}
    | {"", "A", "b", "x", "aa", "ab", "aB", "\u017f", "K", "\u212a", "k", " ", "a\nb", "\\", "{"}
)
Amtool = Callable[[list[str], list[str], list[str]], subprocess.CompletedProcess[str]]
# Where we knowingly differ from amtool: we refuse, it accepts.
KNOWN_STRICTER = ("unexpected )",)


def _our_verdict(text: str) -> tuple[bool, str]:
    try:
        parse_matcher(text)
    except MatcherSyntaxError as exc:
        return False, exc.reason
    return True, ""


def test_acceptance_agrees_with_amtool(amtool: Amtool) -> None:
    corpus = [t for t in dict.fromkeys(ORACLE_MATCHERS) if _one_matcher_in_a_route(t)]
    ours = {t: _our_verdict(t) for t in corpus}
    accepted = [t for t in corpus if ours[t][0]]
    refused = [t for t in corpus if not ours[t][0]]

    def am_accepts(texts: list[str]) -> bool:
        return amtool(["check-config"], texts, []).returncode == 0

    # What we accept, amtool must accept: one config holds them all (it names no culprit,
    # so on failure ask per matcher). What we refuse, amtool must refuse, one by one.
    if am_accepts(accepted):
        am_refused_ours: list[str] = []
    else:
        with ThreadPoolExecutor(8) as pool:
            verdicts = pool.map(am_accepts, [[t] for t in accepted])
            am_refused_ours = [t for t, ok in zip(accepted, verdicts, strict=True) if not ok]
    with ThreadPoolExecutor(8) as pool:
        verdicts = pool.map(am_accepts, [[t] for t in refused])
        am_accepted_refused = [
            (t, ours[t][1])
            for t, ok in zip(refused, verdicts, strict=True)
            if ok and not any(k in ours[t][1] for k in KNOWN_STRICTER)
        ]
    assert am_refused_ours == []
    assert am_accepted_refused == []
    assert len(accepted) > 100 and len(refused) > 50  # the corpus bites both ways


def test_matching_agrees_with_amtool(amtool: Amtool) -> None:
    corpus: list[str] = []
    for text in dict.fromkeys(ORACLE_MATCHERS):
        if not _one_matcher_in_a_route(text):
            continue
        try:
            if parse_matcher(text).name == "a":
                corpus.append(text)
        except MatcherSyntaxError:
            continue
    parsed = [parse_matcher(t) for t in corpus]
    label_sets: list[dict[str, str]] = [{}] + [{"a": v} for v in ORACLE_VALUES]

    def am_routes(labels: Mapping[str, str]) -> set[int]:
        args = [f'{k}="{_am_escape(v)}"' for k, v in labels.items()]
        proc = amtool(["config", "routes", "test", "--config.file"], corpus, args)
        assert proc.returncode == 0, proc.stderr
        names = proc.stdout.strip().split(",")
        return set() if names == ["none"] else {int(n[1:]) for n in names}

    with ThreadPoolExecutor(8) as pool:
        routed = list(pool.map(am_routes, label_sets))
    disagreements = [
        (str(m), labels, k in got)
        for labels, got in zip(label_sets, routed, strict=True)
        for k, m in enumerate(parsed)
        if m.matches(labels) != (k in got)
    ]
    assert disagreements == []
    assert len(parsed) > 100
    assert sum(len(g) for g in routed) > 300  # plenty of matches, not a vacuous agreement
