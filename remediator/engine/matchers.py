"""Alertmanager label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Parsing follows Alertmanager 0.25's classic matcher parser (``pkg/labels/parse.go``):
whitespace around the three tokens is dropped, the value may be double-quoted or bare,
and inside it only ``\\"``, ``\\\\`` and ``\\n`` are escapes (any other backslash is
literal). A label that is absent counts as the empty string, so ``foo=""`` matches
alerts without ``foo`` and ``foo!=""`` requires it.

Regular expressions are written in Go's RE2 syntax and are anchored at both ends, as
Alertmanager compiles ``^(?:value)$``. They are translated once into an equivalent
Python pattern: ``\\d``, ``\\w``, ``\\s`` and ``\\b`` stay ASCII-only, ``$`` means end of
text, ``[[:alpha:]]``, ``\\Q..\\E``, ``\\z``, ``\\x{..}`` and mid-pattern ``(?i)`` are
rewritten, and Go's limits on ``{n,m}`` are enforced. Constructs RE2 refuses
(backreferences, lookaround, atomic groups, possessive quantifiers, ``\\Z``...) are
rejected with the reason. Known gap: ``\\p{..}`` Unicode classes, which Go accepts, are
rejected because Python's ``re`` has no equivalent.

Two deliberate departures, both towards refusing: a value that would close
Alertmanager's anchoring group (``a)|(b``) is rejected instead of matching unanchored,
and so is a pattern Python cannot express. This module must never accept a regex whose
meaning differs from the one Alertmanager gives it. One difference it cannot remove:
Python's ``re`` backtracks where RE2 runs in linear time, so a pathological pattern such
as ``(a+)+b`` is slow on long values; rule files are trusted configuration.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

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
    _pattern: re.Pattern[str] | None = field(
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
        return (self._pattern.fullmatch(value) is not None) is (self.op == "=~")

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


# --- Go RE2 syntax -> Python re -------------------------------------------------------

_MAX_REPEAT = 1000  # Go's regexp/syntax limit on {n,m} counts and on their nesting product.
_Ranges = tuple[tuple[int, int], ...]
_PERL: dict[str, _Ranges] = {
    "d": ((0x30, 0x39),),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}
_POSIX: dict[str, _Ranges] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_CAPTURE_NAME = frozenset(string.ascii_letters + string.digits + "_")
_OCTAL = "01234567"
_PERL_OP_HINTS = {
    "(?=": "lookahead is not supported by RE2",
    "(?!": "lookahead is not supported by RE2",
    "(?<=": "lookbehind is not supported by RE2",
    "(?<!": "lookbehind is not supported by RE2",
    "(?<": "write named groups as (?P<name>...)",
    "(?>": "atomic groups are not supported by RE2",
    "(?#": "comments are not supported by RE2",
    "(?(": "conditionals are not supported by RE2",
    "(?P=": "backreferences are not supported by RE2",
    "(?P": "write named groups as (?P<name>...)",
}
# Python's \B never matches in an empty string; Go's does.
_NOT_BOUNDARY = r"(?a:(?<=\w)(?=\w)|(?<!\w)(?!\w))"
_REPEAT_RE = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_HEX_BRACED_RE = re.compile(r"\{([0-9A-Fa-f]+)\}")
_HEX_TWO_RE = re.compile(r"[0-9A-Fa-f]{2}")


class _RegexError(Exception):
    def __init__(self, reason: str, fragment: str, offset: int) -> None:
        self.message = f"invalid regular expression: {reason}: `{fragment}`"
        super().__init__(self.message)
        self.offset = offset


def _compile(pattern: str) -> re.Pattern[str]:
    translated = _Translator(pattern).run()
    try:
        return re.compile(translated)
    except re.error as exc:  # a Go-valid shape Python cannot express (e.g. "a(?i)*")
        raise _RegexError(f"not supported here ({exc.msg})", pattern, 0) from None


def _lit(cp: int) -> str:
    return re.escape(chr(cp))


def _body(ranges: _Ranges) -> str:
    return "".join(_lit(lo) if lo == hi else f"{_lit(lo)}-{_lit(hi)}" for lo, hi in ranges)


def _flag_group(flags: frozenset[str]) -> str:
    on = "".join(f for f in "ims" if f in flags)
    off = "".join(f for f in "ims" if f not in flags)
    return f"(?{on}{'-' + off if off else ''}:"


@dataclass
class _Frame:
    flags: frozenset[str]  # i/m/s in force here
    start: int  # offset of the "(" that opened the group
    scopes: int = 0  # Python "(?flags:" groups opened for mid-group "(?flags)"
    pending: bool = False  # flags changed; open the scope before the next atom
    weight: int = 1  # largest {n,m} nesting product among finished atoms
    atom: int | None = None  # weight of the atom a repetition would apply to
    atom_at: int = 0  # index in the output where that atom starts
    repeated: bool = False  # that atom already carries a repetition
    out_at: int = 0  # index in the output of this group's "("


class _Translator:
    """Walks a Go regexp the way regexp/syntax does and writes the Python equivalent."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.stack = [_Frame(frozenset(), 0)]
        self.last_repeat: int | None = None

    def fail(self, reason: str, start: int, end: int | None = None) -> _RegexError:
        return _RegexError(reason, self.p[start : len(self.p) if end is None else end], start)

    def run(self) -> str:
        p = self.p
        while self.i < len(p):
            prev_repeat, self.last_repeat = self.last_repeat, None
            c, start = p[self.i], self.i
            if c == "(":
                self.open_group()
            elif c == ")":
                self.close_group()
            elif c == "|":
                frame = self.commit()
                self.out.append(")" * frame.scopes + "|")
                # Go keeps "(?i)" in force after "|" until the group ends.
                frame.pending = frame.pending or frame.scopes > 0
                frame.scopes = 0
                self.i += 1
            elif c in "*+?":
                self.i += 1
                self.repeat(start, prev_repeat, 0, -1)
            elif c == "{" and (counts := self.repeat_counts()) is not None:
                self.repeat(start, prev_repeat, *counts)
            elif c == "[":
                self.atom(self.char_class())
            elif c == "\\":
                self.backslash()
            else:
                self.i += 1
                if c == "^":
                    self.atom("(?:^)")
                elif c == "$":
                    self.atom("(?:$)" if "m" in self.stack[-1].flags else r"(?:\Z)")
                else:
                    self.atom("." if c == "." else _lit(ord(c)))
        if len(self.stack) > 1:
            raise self.fail("missing closing )", self.stack[-1].start)
        self.out.append(")" * self.commit().scopes)
        return "".join(self.out)

    def commit(self) -> _Frame:
        frame = self.stack[-1]
        if frame.pending:
            self.out.append(_flag_group(frame.flags))
            frame.scopes += 1
            frame.pending = False
        if frame.atom is not None:
            frame.weight = max(frame.weight, frame.atom)
            frame.atom = None
        return frame

    def atom(self, text: str, weight: int = 1) -> None:
        frame = self.commit()
        frame.atom, frame.atom_at, frame.repeated = weight, len(self.out), False
        self.out.append(text)

    def repeat(self, start: int, prev_repeat: int | None, lo: int, hi: int) -> None:
        if self.i < len(self.p) and self.p[self.i] == "?":
            self.i += 1  # lazy; irrelevant to a full match, kept for fidelity
        if prev_repeat is not None:
            raise self.fail("invalid nested repetition operator", prev_repeat, self.i)
        frame = self.stack[-1]
        if frame.atom is None:
            raise self.fail("missing argument to repetition operator", start, self.i)
        if self.p[start] == "{":
            # Go caps the product of nested {n,m} counts (repeatIsValid); m=0 stops it.
            count = hi if hi >= 0 else lo
            if (lo >= 2 or hi >= 2) and count > 0 and count * frame.atom > _MAX_REPEAT:
                raise self.fail("invalid repeat count", start, self.i)
            frame.atom = count * frame.atom if count > 0 else 1
        if frame.repeated:
            # "a*(?i)*" is (a*)* in Go; Python rejects "a**" unless grouped.
            self.out.insert(frame.atom_at, "(?:")
            self.out.append(")")
        self.out.append(self.p[start : self.i])
        frame.repeated = True
        self.last_repeat = start

    def repeat_counts(self) -> tuple[int, int] | None:
        """Parse {n}, {n,} or {n,m} at self.i; None means "{" is a literal, as in Go."""
        m = _REPEAT_RE.match(self.p, self.i)
        if m is None or any(len(g) > 1 and g[0] == "0" for g in (m[1], m[3] or "") if g):
            return None
        lo = int(m[1])
        hi = lo if m[2] is None else (int(m[3]) if m[3] else -1)
        if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and lo > hi):
            raise self.fail("invalid repeat count", self.i, m.end())
        self.i = m.end()
        return lo, hi

    def open_group(self) -> None:
        p, start = self.p, self.i
        flags = self.stack[-1].flags
        if p.startswith("(?P<", start):
            end = p.find(">", start)
            name = p[start + 4 : end]
            if end < 0 or not name or not set(name) <= _CAPTURE_NAME:
                raise self.fail("invalid named capture", start, None if end < 0 else end + 1)
            self.i = end + 1
            self.push("(", flags, start)
        elif p.startswith("(?", start):
            self.inline_flags(start)
        else:
            self.i += 1
            self.push("(", flags, start)

    def push(self, text: str, flags: frozenset[str], start: int) -> None:
        self.commit()
        self.stack.append(_Frame(flags, start, out_at=len(self.out)))
        self.out.append(text)

    def close_group(self) -> None:
        if len(self.stack) == 1:
            # Alertmanager would let it close its own "^(?:" and match unanchored.
            raise self.fail("unexpected ) (it would break the anchoring)", self.i, self.i + 1)
        child = self.commit()
        self.stack.pop()
        self.out.append(")" * (child.scopes + 1))
        parent = self.stack[-1]
        parent.atom, parent.atom_at, parent.repeated = child.weight, child.out_at, False
        self.i += 1

    def inline_flags(self, start: int) -> None:
        p, j = self.p, start + 2
        on: set[str] = set()
        off: set[str] = set()
        negate = saw = False
        while j < len(p):
            c = p[j]
            j += 1
            if c in "imsU":
                (off if negate else on).add(c)
                saw = True
            elif c == "-" and not negate:
                negate, saw = True, False
            elif c in ":)" and (saw or not negate):
                frame = self.stack[-1]
                flags = frozenset((frame.flags | on) - off - {"U"})  # U: greediness only
                self.i = j
                if c == ":":
                    self.push(_flag_group(flags), flags, start)
                elif flags != frame.flags:
                    # Opened lazily: in Go the atom before "(?i)" stays repeatable.
                    frame.pending = True
                    frame.flags = flags
                return
            else:
                break
        else:
            raise self.fail("missing closing )", start)
        hint = next((h for k, h in _PERL_OP_HINTS.items() if p.startswith(k, start)), None)
        if hint is None and p[j - 1] not in "imsU-:)":
            hint = f"RE2 knows only the flags i, m, s, U, not {p[j - 1]!r}"
        reason = "invalid or unsupported Perl syntax" + (f" ({hint})" if hint else "")
        raise self.fail(reason, start, j)

    def backslash(self) -> None:
        p, start = self.p, self.i
        c = p[start + 1] if start + 1 < len(p) else ""
        if c == "Q":
            end = p.find("\\E", start + 2)
            if end < 0:
                # Go would swallow Alertmanager's closing ")$" too and fail.
                raise self.fail("missing closing ) (\\Q without \\E)", start)
            for ch in p[start + 2 : end]:
                self.atom(_lit(ord(ch)))
            self.i = end + 2
            return
        special = {"A": r"(?:\A)", "z": r"(?:\Z)", "b": r"(?a:\b)", "B": _NOT_BOUNDARY}
        if c in special:
            self.i += 2
            self.atom(special[c])
        elif c in "dDsSwW" and c:
            self.i += 2
            body = _body(_PERL[c.lower()])
            self.atom(f"[{'^' if c.isupper() else ''}{body}]")
        elif c in "pP" and c:
            raise self.fail("Unicode classes (\\p, \\P) are not supported", start, start + 2)
        else:
            cp, self.i = self.escape(start)
            self.atom(_lit(cp))

    def escape(self, start: int) -> tuple[int, int]:
        """A single-character escape (Go's parseEscape); returns (code point, next index)."""
        p = self.p
        if start + 1 >= len(p):
            raise self.fail("trailing backslash at end of expression", start)
        c, j = p[start + 1], start + 2
        if c in _OCTAL and (c == "0" or (j < len(p) and p[j] in _OCTAL)):
            value = int(c)
            for _ in range(2):
                if j < len(p) and p[j] in _OCTAL:
                    value, j = value * 8 + int(p[j]), j + 1
            return value, j
        if c == "x":
            braced = _HEX_BRACED_RE.match(p, j)
            if braced is not None and int(braced[1], 16) <= 0x10FFFF:
                return int(braced[1], 16), braced.end()
            two = _HEX_TWO_RE.match(p, j)
            if two is not None:
                return int(two[0], 16), two.end()
            raise self.fail("invalid escape sequence", start, min(len(p), j + 1))
        simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
        if c in simple:
            return simple[c], j
        if c.isascii() and not c.isalnum():
            return ord(c), j
        hint = {"Z": " (RE2 writes end of text as \\z)"}.get(c, "")
        if c.isdigit():
            hint = " (backreferences are not supported by RE2)"
        raise self.fail("invalid escape sequence" + hint, start, j)

    def char_class(self) -> str:
        p, start = self.p, self.i
        i = start + 1
        negated = i < len(p) and p[i] == "^"
        i += negated
        pos: list[str] = []
        negs: list[str] = []
        first = True
        while i < len(p) and (p[i] != "]" or first):
            first = False
            end = p.find(":]", i + 2) if p.startswith("[:", i) else -1
            if end >= 0:
                name = p[i + 2 : end]
                ranges = _POSIX.get(name.removeprefix("^"))
                if ranges is None:
                    raise self.fail("invalid character class range", i, end + 2)
                (negs if name.startswith("^") else pos).append(_body(ranges))
                i = end + 2
                continue
            c = p[i + 1] if p[i] == "\\" and i + 1 < len(p) else ""
            if c and c in "pP":
                raise self.fail("Unicode classes (\\p, \\P) are not supported", i, i + 2)
            if c and c in "dDsSwW":
                (negs if c.isupper() else pos).append(_body(_PERL[c.lower()]))
                i += 2
                continue
            range_start = i
            lo, i = self.class_char(i, start)
            hi = lo
            if i + 1 < len(p) and p[i] == "-" and p[i + 1] != "]":
                hi, i = self.class_char(i + 1, start)
                if hi < lo:
                    raise self.fail("invalid character class range", range_start, i)
            pos.append(_body(((lo, hi),)))
        if i >= len(p):
            raise self.fail("missing closing ]", start)
        self.i = i + 1
        body = "".join(pos)
        if not negs:
            return f"[{'^' if negated else ''}{body}]"
        # Python cannot nest a negated set inside a set: spell it as an alternation.
        inner = "|".join(([f"[{body}]"] if body else []) + [f"[^{n}]" for n in negs])
        return f"(?:(?!{inner})(?s:.))" if negated else f"(?:{inner})"

    def class_char(self, i: int, class_start: int) -> tuple[int, int]:
        if i >= len(self.p):
            raise self.fail("missing closing ]", class_start)
        if self.p[i] == "\\":
            return self.escape(i)
        return ord(self.p[i]), i + 1
