"""What ``doctor`` found, as typed records, and its two renderings.

``Report.to_json()`` is DESIGN's contract, key for key: ``{"ok", "targets": [{"name",
"ok", "detail"}], "pagers": [...], "routing": {SEVERITY: [PAGER]}, "runbooks":
[{"runbook", "steps": [{"step", "runnable", "reason", "missing",
"optional_missing"}]}]}``. ``format_text()`` is the same for a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class Check:
    """One target or pager. A target that is not configured is ok (reported, not an
    error); ``configured`` tells the two apart for the human output."""

    name: str
    ok: bool
    detail: str
    configured: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def not_configured(name: str, key: str) -> Check:
    return Check(name, True, f"{NOT_CONFIGURED} ({key})", configured=False)


@dataclass(frozen=True)
class StepReport:
    step: str
    runnable: bool
    reason: str
    missing: tuple[str, ...] = ()
    optional_missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "runnable": self.runnable,
            "reason": self.reason,
            "missing": list(self.missing),
            "optional_missing": list(self.optional_missing),
        }


@dataclass(frozen=True)
class RunbookReport:
    runbook: str
    title: str
    steps: tuple[StepReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "steps": [s.to_json() for s in self.steps]}


@dataclass(frozen=True)
class Report:
    targets: tuple[Check, ...]
    pagers: tuple[Check, ...]
    routing: Mapping[str, list[str]]
    runbooks: tuple[RunbookReport, ...]
    notes: tuple[str, ...] = field(default=())  # human output only (e.g. routing warnings)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in (*self.targets, *self.pagers))

    @property
    def failing(self) -> tuple[Check, ...]:
        return tuple(c for c in (*self.targets, *self.pagers) if not c.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "targets": [c.to_json() for c in self.targets],
            "pagers": [c.to_json() for c in self.pagers],
            "routing": {s: list(p) for s, p in self.routing.items()},
            "runbooks": [r.to_json() for r in self.runbooks],
        }


def _mark(check: Check) -> str:
    if not check.configured:
        return "--  "
    return "ok  " if check.ok else "FAIL"


def format_text(report: Report) -> str:
    lines: list[str] = []
    failing = report.failing
    head = "all configured checks passed" if not failing else f"{len(failing)} check(s) failed"
    lines.append(f"remediator doctor: {head}")
    for title, checks in (("targets", report.targets), ("pagers", report.pagers)):
        lines += ["", title]
        width = max((len(c.name) for c in checks), default=0)
        lines += [f"  {_mark(c)}  {c.name:<{width}}  {c.detail}" for c in checks]
    lines += ["", "routing (severity -> pagers)"]
    for severity, pagers in report.routing.items():
        lines.append(f"  {severity}  {', '.join(pagers) or 'NOBODY: no pager configured'}")
    lines += [f"  note: {n}" for n in report.notes]
    for rb in report.runbooks:
        runnable = sum(s.runnable for s in rb.steps)
        lines += ["", f"{rb.runbook} {rb.title}: {runnable} of {len(rb.steps)} steps can run"]
        width = max((len(s.step) for s in rb.steps), default=0)
        for s in rb.steps:
            mark = "ok " if s.runnable else "NO "
            lines.append(f"  {mark} {s.step:<{width}}  {s.reason}".rstrip())
            if s.optional_missing:
                pad = " " * (width + 8)
                lines.append(f"{pad}optional, absent: {', '.join(s.optional_missing)}")
    return "\n".join(lines)
