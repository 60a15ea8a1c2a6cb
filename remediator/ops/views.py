"""What ``remediator actions`` and ``remediator approvals`` print: a header, then one
line per entry, columns sized to their content. The JSON forms are the API's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

_DETAIL_MAX = 200


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(s: str, limit: int = _DETAIL_MAX) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    last = len(header) - 1

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c if i == last else c.ljust(widths[i]) for i, c in enumerate(cells))

    return [line(header).rstrip(), *(line(r).rstrip() for r in rows)]


def actions(entries: Sequence[dict[str, Any]]) -> str:
    if not entries:
        return "no actions recorded"
    header = ("WHEN (UTC)", "RUN", "RUNBOOK", "PHASE", "STEP", "STATUS", "DETAIL")
    rows = [
        (
            _when(e["started_at"]),
            e["run_id"],
            e["runbook"],
            e["phase"],
            e["name"],
            e.get("status") or e.get("outcome") or e["state"],
            _one_line(e.get("detail") or e.get("reason") or ""),
        )
        for e in entries
    ]
    return "\n".join(_table(header, rows))


def approvals(pending: Sequence[dict[str, Any]], command: str) -> str:
    """``command`` is the approve command as it must be typed here, with "{id}"."""
    if not pending:
        return "no pending approvals"
    header = ("ID", "RUN", "RUNBOOK", "STEP", "EXPIRES (UTC)", "WHO MAY DECIDE")
    lines: list[str] = []
    table = _table(
        header,
        [
            (str(a["id"]), a["run_id"], a["runbook"], a["step"], _when(a["expires_at"]), a["who"])
            for a in pending
        ],
    )
    lines.append(table[0])
    for a, row in zip(pending, table[1:], strict=True):
        lines.append(row)
        lines.append(f"    would run: {_one_line(a['rendered'], 500)}")
        lines.append(f"    decide: {command.format(id=a['id'])}")
    return "\n".join(lines)
