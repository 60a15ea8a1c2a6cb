"""What a verify query says: the alert's labels put in, and whether an answer is true.

Kept apart from engine/verify.py (the polls, outcomes and follow-through) so each
stays small; verify.py re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from remediator.clients.prometheus import Reading, promql_string
from remediator.engine.rules import LABEL_PLACEHOLDER
from remediator.runbook_api.client_protocols import PromReading


def render_query(query: str, labels: Mapping[str, str]) -> str:
    """The query with each ``"{{ $labels.NAME }}"`` replaced by an escaped literal."""
    return LABEL_PLACEHOLDER.sub(lambda m: promql_string(labels.get(m.group(1), "")), query)


_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_LOGIC = re.compile(r"\b(?:and|or|unless)\b")
_OPEN, _CLOSE = "([{", ")]}"
_MIRRORED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


def split_comparison(query: str) -> tuple[str, str] | None:
    """``(lhs, "< 600")`` when the query is one top-level comparison with a number,
    so a page can say what the left side was when the filter returned nothing."""
    depth, quote, ops, top = 0, "", [], []
    i = 0
    while i < len(query):
        c = query[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0:
            two = query[i : i + 2]
            if two in ("==", "!=", ">=", "<="):
                ops.append((i, 2))
                i += 1
            elif c in "<>":
                ops.append((i, 1))
            top.append(c)
        i += 1
    if len(ops) != 1 or _LOGIC.search("".join(top)):
        return None
    at, width = ops[0]
    lhs, op, rhs = query[:at], query[at : at + width], query[at + width :]
    if _NUMBER.fullmatch(lhs) and rhs.strip() and rhs.split()[0] != "bool":
        # "600 > x" filters as "x < 600" does: the series are x's.
        lhs, op, rhs = rhs, _MIRRORED[op], lhs
    if not lhs.strip() or _NUMBER.fullmatch(lhs) or not _NUMBER.fullmatch(rhs):
        return None
    return lhs.strip(), f"{op} {rhs.strip()}"


def holds(query: str, answer: PromReading) -> bool:
    """Whether an answer shows the mitigation held.

    A query that is one comparison with a number, without ``bool``, is a filter: it
    keeps a series only where the condition holds, whatever the series' value, so any
    series is true (``max(pack_build_duration_seconds) < 600`` answers ``{} 0`` once
    the build is done: that is the recovery, not a failure). Any other query (``< bool
    600``, a bare value) is true when a sample is not 0."""
    if answer.true:
        return True
    return isinstance(answer, Reading) and answer.series > 0 and split_comparison(query) is not None
