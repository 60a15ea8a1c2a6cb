"""Judge each runbook step against what the checks found: can it run, and if not, why.

Pure: it reads ``Facts`` and the catalog, and asks nobody. A step is runnable when
every need is met; ``missing`` lists what is not (a target key, a table, a column, a
privilege, a verb, an AWS call, a param), ``optional_missing`` what the step would
use but can do without.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.doctor import catalog
from remediator.doctor.database import DbFacts
from remediator.doctor.needs import (
    Aws,
    Cache,
    Database,
    Extension,
    Http,
    Index,
    Kube,
    Need,
    Param,
    Prepared,
    Role,
    Table,
)
from remediator.doctor.report import StepReport
from remediator.runbook_api.steps import Runbook, Statement, Step
from remediator.settings import Settings

AwsKey = tuple[str, str]


@dataclass(frozen=True)
class Facts:
    settings: Settings
    db: DbFacts | None = None  # None: targets.database not configured
    redis_ok: bool = False
    kube: Mapping[Kube, tuple[bool, str]] | None = None  # None: off or unreachable
    kube_error: str = ""
    aws_error: str = ""  # set when targets.aws is configured but STS failed
    aws: Mapping[AwsKey, str | None] = field(default_factory=dict)
    app_ok: bool = False


def aws_subject(need: Aws, params: Any) -> str | None:
    """What the read-only probe of ``need`` looks at, from the rule's params."""
    if need.probe == "rds_instance":
        return str(getattr(params, "db_instance_identifier", "") or "") or None
    if need.probe == "waf_ip_set":
        set_id = getattr(params, "waf_ip_set_id", None)
        if not set_id:
            return None
        return f"{params.waf_ip_set_name}|{set_id}|{params.waf_scope}"
    if need.probe == "s3_bucket":
        return str(getattr(params, "exports_bucket", "") or "") or None
    return None


@dataclass
class _Verdict:
    problems: list[str] = field(default_factory=list)  # why it cannot run
    missing: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    catalog_gaps: list[str] = field(default_factory=list)  # fail the database check

    def lack(self, item: str, why: str, *, catalog_gap: bool = False) -> None:
        if item not in self.missing:
            self.missing.append(item)
        if why not in self.problems:
            self.problems.append(why)
        if catalog_gap and item not in self.catalog_gaps:
            self.catalog_gaps.append(item)


def step_needs(runbook: Runbook, step: Step) -> tuple[Need, ...] | None:
    """The catalog's needs of a built-in step; for any other step (a YAML runbook's),
    what it declares: its clients, statements and Kubernetes verbs. None: unknown."""
    known = catalog.needs_of(runbook.id, step.name)
    if known is not None:
        return known
    if not step.needs and not step.requires:
        return None
    out: list[Need] = []
    for req in step.requires:
        if isinstance(req, Statement):
            out.append(Prepared(req.sql, req.binds))
        else:
            out.append(Kube(req.verb, req.resource, req.subresource, req.group))
    simple: dict[str, Need] = {"database": Database(), "cache": Cache(), "http": Http("providers")}
    out += [simple[n] for n in step.needs if n in simple and simple[n] not in out]
    return tuple(out)


def _database(v: _Verdict, need: Need, db: DbFacts | None) -> None:
    if db is None:
        v.lack("targets.database", "targets.database is not configured")
        return
    if db.error is not None:
        v.lack("targets.database", f"database {db.error}")
        return
    if isinstance(need, Table):
        _table(v, need, db)
    elif isinstance(need, Prepared) and db.statements.get(need.sql):
        v.lack(str(need), f"{need} fails: {db.statements[need.sql]}", catalog_gap=True)
    elif isinstance(need, Index) and need.name not in db.indexes:
        v.lack(str(need), f"no {need}", catalog_gap=True)
    elif isinstance(need, Role) and not db.has_role(need.name):
        why = f"{db.who} is neither superuser nor a member of {need.name}"
        v.lack(str(need), why, catalog_gap=True)
    elif isinstance(need, Extension) and need.name not in db.extensions:
        if need.optional:
            v.optional.append(str(need))
        else:
            v.lack(str(need), f"no {need}", catalog_gap=True)


def _table(v: _Verdict, need: Table, db: DbFacts) -> None:
    if need.name not in db.tables:
        v.lack(need.name, f"no table {need.name}", catalog_gap=True)
        return
    for column, privileges in need.required().items():
        facts = db.columns.get((need.name, column))
        if facts is None:
            item = f"{need.name}.{column}"
            v.lack(item, f"no column {item}", catalog_gap=True)
            continue
        held = {"SELECT": facts.select, "UPDATE": facts.update, "INSERT": facts.insert}
        for privilege in privileges:
            if not held[privilege]:
                item = f"{privilege} on {need.name}.{column}"
                v.lack(item, f"{db.who} lacks {item}", catalog_gap=True)
    if need.delete and not any(f.delete for (t, _), f in db.columns.items() if t == need.name):
        item = f"DELETE on {need.name}"
        v.lack(item, f"{db.who} lacks {item}", catalog_gap=True)
    for column in need.optional:
        if (need.name, column) not in db.columns:
            v.optional.append(f"{need.name}.{column}")


def _kube(v: _Verdict, need: Kube, facts: Facts) -> None:
    if facts.settings.targets.kubernetes.mode == "off":
        v.lack("targets.kubernetes", "targets.kubernetes is not configured (mode off)")
    elif facts.kube is None:
        v.lack("targets.kubernetes", f"kubernetes {facts.kube_error}")
    else:
        allowed, reason = facts.kube.get(need, (False, "not asked"))
        if not allowed:
            v.lack(str(need), f"not allowed to {need}" + (f" ({reason})" if reason else ""))


def _aws(v: _Verdict, need: Aws, facts: Facts, params: Any) -> None:
    if facts.settings.targets.aws is None:
        v.lack("targets.aws", "targets.aws is not configured")
        return
    if facts.aws_error:
        v.lack("targets.aws", f"aws {facts.aws_error}")
        return
    if need.probe is None:
        v.notes.append(f"{need} not checked (it would act)")
        return
    subject = aws_subject(need, params)
    if subject is None:
        return  # the Param need says what is missing
    problem = facts.aws.get((need.probe, subject))
    if problem:
        v.lack(str(need), f"{need} failed: {problem}")


def _simple(v: _Verdict, need: Need, facts: Facts, params: Any) -> None:
    t = facts.settings.targets
    if isinstance(need, Http) and need.peer == "app":
        if not t.http.app_url:
            v.lack(str(need), "targets.http.app_url is not configured")
        elif not facts.app_ok:
            v.lack("http.app", "the app's freshness gate did not pass its check")
    elif isinstance(need, Http):
        # RB-01 checks its build providers only; others take any configured provider.
        wanted = tuple(getattr(params, "build_providers", ()) or ())
        if not t.http.providers:
            v.lack(str(need), "no provider is configured in targets.http.providers")
        elif wanted and not set(wanted) & set(t.http.providers):
            v.lack(
                str(need),
                f"none of the build providers {', '.join(wanted)} is in targets.http.providers",
            )
    elif isinstance(need, Cache):
        if t.redis is None:
            v.lack(str(need), "targets.redis is not configured")
        elif not facts.redis_ok:
            v.lack("redis", "redis did not pass its check")
    elif isinstance(need, Param) and all(
        getattr(params, n, None) in (None, "") for n in need.names
    ):
        v.lack(str(need), f"{need} is not set in the rule")


@dataclass(frozen=True)
class Judged:
    steps: tuple[StepReport, ...]
    catalog_gaps: tuple[str, ...]  # required tables, columns, privileges... not there


def judge(runbook: Runbook, params: Any, facts: Facts) -> Judged:
    out = []
    gaps: list[str] = []
    for step in (*runbook.steps, *runbook.resolve_steps):
        needs = step_needs(runbook, step)
        if needs is None:
            out.append(StepReport(step.name, True, "declares no target needs: not checked"))
            continue
        v = _Verdict()
        for need in needs:
            if isinstance(need, Database | Table | Index | Role | Extension | Prepared):
                _database(v, need, facts.db)
            elif isinstance(need, Kube):
                _kube(v, need, facts)
            elif isinstance(need, Aws):
                _aws(v, need, facts, params)
            else:
                _simple(v, need, facts, params)
        reason = "; ".join(v.problems) if v.problems else "; ".join(v.notes)
        out.append(
            StepReport(step.name, not v.missing, reason, tuple(v.missing), tuple(v.optional))
        )
        gaps += [g for g in v.catalog_gaps if g not in gaps]
    return Judged(tuple(out), tuple(gaps))


def kube_needs(runbooks: Iterable[Runbook]) -> set[Kube]:
    return {n for rb in runbooks for n in _all_needs(rb) if isinstance(n, Kube)}


def aws_needs(runbooks: Iterable[tuple[Runbook, Any]]) -> list[tuple[Aws, str]]:
    out = []
    for rb, params in runbooks:
        for need in _all_needs(rb):
            if isinstance(need, Aws) and need.probe:
                subject = aws_subject(need, params)
                if subject is not None:
                    out.append((need, subject))
    return out


def _all_needs(runbook: Runbook) -> list[Need]:
    return [
        need
        for step in (*runbook.steps, *runbook.resolve_steps)
        for need in (step_needs(runbook, step) or ())
    ]


def statements(runbooks: Iterable[Runbook]) -> list[Prepared]:
    """The statements of the runbooks' steps that doctor EXPLAINs on the target."""
    return [n for rb in runbooks for n in _all_needs(rb) if isinstance(n, Prepared)]
