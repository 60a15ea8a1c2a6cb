"""Alertmanager label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Parsing follows Alertmanager 0.25's classic matcher parser (``pkg/labels/parse.go``):
whitespace around the three tokens is dropped, the value may be double-quoted or bare,
and inside it only ``\\"``, ``\\\\`` and ``\\n`` are escapes (any other backslash is
literal). A label that is absent counts as the empty string, so ``foo=""`` matches
alerts without ``foo`` and ``foo!=""`` requires it.

Regular expressions are RE2, as in Alertmanager (Go's regexp is an RE2), compiled
with the ``google-re2`` bindings the way Alertmanager compiles them, ``^(?:value)$``: same
syntax, same meaning, linear-time matching whatever the pattern. Errors use Go's words.

Deliberate departures, all towards refusing: a value that would close the anchoring
group (``a)|(b``) is refused instead of matching unanchored; ``\\C`` and
``(?<name>..)``, which the C++ RE2 accepts and Alertmanager 0.25's Go does not, are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

import re2  # type: ignore[import-untyped]

from remediator.errors import RuleError

Op = Literal["=", "!=", "=~", "!~"]
OPS: tuple[Op, ...] = get_args(Op)
# Alternation order of Alertmanager's parser: "=~" must be tried before "=".
_PARSE_OPS: tuple[Op, ...] = ("=~", "=", "!=", "!~")
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GO_SPACE = "\t\n\f\r "  # Go's \s; Python's str.strip() would also drop \v and U+00A0.
# Go's unicode.IsSpace (Python's str.isspace() also counts U+001C..U+001F).
_GO_UNICODE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


class _Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


class MatcherSyntaxError(RuleError, ValueError):
    """A matcher string (or a regex inside it) is invalid.

    ``position`` is the 1-based column in ``text`` where the problem is; ``reason``
    says what was expected. The rule loader adds file:line.
    """

    def __init__(self, text: str, position: int, reason: str) -> None:
        super().__init__(f"{reason} (column {position} of {text!r})")
        self.text = text
        self.position = position
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher. Build it with ``parse_matcher`` or directly; both validate."""

    name: str
    op: Op
    value: str
    _pattern: _Pattern | None = field(
        init=False, default=None, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise MatcherSyntaxError(
                f"{self.name}{self.op}", len(self.name) + 1, "expected one of =, !=, =~, !~"
            )
        if not _NAME_RE.fullmatch(self.name):
            raise MatcherSyntaxError(
                str(self), 1, "expected a label name matching [a-zA-Z_:][a-zA-Z0-9_:]*"
            )
        value_col = len(self.name) + len(self.op) + 2
        if any("\ud800" <= ch <= "\udfff" for ch in self.value):
            raise MatcherSyntaxError(str(self), value_col, "value is not valid UTF-8")
        if self.op in ("=~", "!~"):
            try:
                pattern = _compile(self.value)
            except _RegexError as exc:
                # The regex offset is a column offset only if __str__ escaped nothing.
                if not any(ch in self.value for ch in '\\"\n'):
                    value_col += exc.offset
                raise MatcherSyntaxError(str(self), value_col, exc.message) from exc
            object.__setattr__(self, "_pattern", pattern)

    @property
    def is_regex(self) -> bool:
        return self._pattern is not None

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self._pattern is None:
            return (value == self.value) is (self.op == "=")
        return (self._pattern.search(value) is not None) is (self.op == "=~")

    def to_api(self) -> dict[str, Any]:
        """The Alertmanager API v2 form: ``{name, value, isRegex, isEqual}``."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.op in ("=~", "!~"),
            "isEqual": self.op in ("=", "=~"),
        }

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse_matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    """One matcher per string (no ``{a="b", c="d"}`` lists)."""
    return tuple(parse_matcher(t) for t in texts)


def parse_matcher(text: str) -> Matcher:
    """Parse ``name op value`` as Alertmanager does for one entry of a route's ``matchers``.

    That is ``labels.ParseMatcher`` after the ``strings.TrimSpace`` that
    ``ParseMatchers`` applies, so Unicode spaces at either end are dropped too.
    """
    n = len(text.rstrip(_GO_UNICODE_SPACE))
    i = _skip_space(text, len(text) - len(text.lstrip(_GO_UNICODE_SPACE)), n)
    name_match = _NAME_RE.match(text, i)
    if name_match is None:
        got = repr(text[i]) if i < n else "end of input"
        raise MatcherSyntaxError(
            text, i + 1, f"expected a label name matching [a-zA-Z_:][a-zA-Z0-9_:]*, got {got}"
        )
    name = name_match.group()
    i = _skip_space(text, name_match.end(), n)
    op = next((o for o in _PARSE_OPS if text.startswith(o, i)), None)
    if op is None:
        got = repr(text[i]) if i < n else "end of input"
        raise MatcherSyntaxError(
            text, i + 1, f"expected one of =, !=, =~, !~ after label name {name!r}, got {got}"
        )
    start = _skip_space(text, i + len(op), n)
    end = n
    while end > start and text[end - 1] in _GO_SPACE:
        end -= 1
    value, raw_start, verbatim = _unquote(text, start, end)
    try:
        return Matcher(name, op, value)
    except MatcherSyntaxError as exc:
        # Point into the caller's text; a regex offset maps 1:1 only without escapes.
        col = raw_start + 1
        if verbatim and isinstance(exc.__cause__, _RegexError):
            col += exc.__cause__.offset
        raise MatcherSyntaxError(text, col, exc.reason) from None


def _skip_space(text: str, i: int, end: int | None = None) -> int:
    end = len(text) if end is None else end
    while i < end and text[i] in _GO_SPACE:
        i += 1
    return i


def _unquote(text: str, start: int, end: int) -> tuple[str, int, bool]:
    """Unescape text[start:end]; return (value, index of its first char, had no escapes)."""
    quoted = start < end and text[start] == '"'
    raw_start = start + 1 if quoted else start
    out: list[str] = []
    closed = False
    verbatim = True
    i = raw_start
    while i < end:
        ch = text[i]
        if ch == "\\" and i < end - 1:
            nxt = text[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            verbatim = verbatim and nxt not in 'n"\\'
            i += 2
            continue
        if ch == '"':
            if not quoted:
                raise MatcherSyntaxError(
                    text, i + 1, 'unexpected " in an unquoted value: quote the value and write \\"'
                )
            if i < end - 1:
                raise MatcherSyntaxError(
                    text, i + 1, 'unexpected " inside a quoted value: expected \\" or the end'
                )
            closed = True
        else:
            out.append(ch)
        i += 1
    if quoted and not closed:
        raise MatcherSyntaxError(
            text, start + 1, 'unterminated quoted value: expected a closing " at the end'
        )
    return "".join(out), raw_start, verbatim


# --- RE2 ---------------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the reason goes into MatcherSyntaxError, not stderr
# Friendlier words for RE2's "invalid perl operator" answers.
_PERL_OP_HINTS = {
    "(?=": "lookahead is not supported by RE2",
    "(?!": "lookahead is not supported by RE2",
    "(?<=": "lookbehind is not supported by RE2",
    "(?<!": "lookbehind is not supported by RE2",
    "(?>": "atomic groups are not supported by RE2",
    "(?#": "comments are not supported by RE2",
    "(?(": "conditionals are not supported by RE2",
    "(?P=": "backreferences are not supported by RE2",
}


class _RegexError(Exception):
    def __init__(self, reason: str, fragment: str, offset: int) -> None:
        self.message = f"invalid regular expression: {reason}: `{fragment}`"
        super().__init__(self.message)
        self.offset = offset


# RE2's C++ words -> the words of Go's regexp/syntax, which Alertmanager users see.
_GO_WORDS = {
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid repetition size": "invalid repeat count",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
}


def _compile(pattern: str) -> _Pattern:
    """Compile as Alertmanager does: RE2 syntax, anchored as ``^(?:pattern)$``.

    The pattern must also compile on its own, so that a value that closes the anchoring
    group (``a)|(b``), which Alertmanager would match unanchored, is refused. Two
    spellings the C++ RE2 accepts and Alertmanager 0.25's Go does not are refused too:
    ``\\C`` (one byte) and ``(?<name>...)`` (Go 1.22 syntax).
    """
    _refuse_newer_than_go(pattern)
    _re2_compile(pattern, pattern)
    try:
        return _re2_compile(f"^(?:{pattern})$", pattern)
    except _RegexError:
        # It compiles alone, so a trailing \\Q (no \\E) quoted the anchor's ")" away.
        at = max(pattern.rfind("\\Q"), 0)
        reason = "missing closing ): \\Q without \\E quotes the anchor"
        raise _RegexError(reason, "\\Q", at) from None


def _re2_compile(source: str, pattern: str) -> _Pattern:
    try:
        compiled: _Pattern = re2.compile(source, _RE2_OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else b""
        detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        reason, _, fragment = detail.partition(": ")
        offset = max(pattern.find(fragment), 0) if fragment else 0
        if reason == "unexpected )":
            offset, fragment = _unbalanced_close(pattern), ")"
        raise _RegexError(_explain(reason, pattern[offset:]), fragment or pattern, offset) from None
    return compiled


def _explain(reason: str, rest: str) -> str:
    """Go's wording for RE2's reason, with a hint where RE2 users often trip."""
    words = _GO_WORDS.get(reason, reason)
    for prefix, hint in _PERL_OP_HINTS.items():
        if rest.startswith(prefix):
            return f"{words}: {hint}"
    if reason == "invalid perl operator":
        return f"{words} (RE2 supports the flags i, m, s, U)"
    if rest.startswith("\\Z"):
        return f"{words} (write \\z for the end of the text)"
    if len(rest) > 1 and rest[0] == "\\" and rest[1].isdigit():
        return f"{words} (backreferences are not supported by RE2)"
    return words


def _unbalanced_close(pattern: str) -> int:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith(("[]", "[^]"), i):
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return i
        i += 1
    return 0


def _refuse_newer_than_go(pattern: str) -> None:
    i = 0
    while i < len(pattern):
        if pattern.startswith("\\Q", i):  # literal text up to \E: nothing to refuse
            end = pattern.find("\\E", i + 2)
            i = len(pattern) if end < 0 else end + 2
            continue
        if pattern.startswith("\\C", i):
            raise _RegexError("invalid escape sequence", "\\C", i)
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            raise _RegexError("write named groups as (?P<name>...)", pattern[i : i + 3], i)
        i += 1
