"""What a runbook step needs from the world, as typed values (the vocabulary of
``catalog.py``).

Each need names one thing ``doctor`` can check: a table's columns and the privileges
on them, an index, a database role, an extension, a Kubernetes verb on a resource, an
AWS call, an HTTP peer, the cache, or a rule param. ``str()`` of a need is how it is
shown in ``missing`` lists, so it must read as the thing a human has to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Privilege = Literal["SELECT", "UPDATE", "INSERT", "DELETE"]


@dataclass(frozen=True)
class Database:
    """A connection to the target database (system views such as pg_stat_activity)."""

    def __str__(self) -> str:
        return "targets.database"


@dataclass(frozen=True)
class Table:
    """Columns of one table a step reads or writes.

    ``read``/``write``/``insert`` are required: the runbook text names them. ``optional``
    columns are used where they exist (a pack's build status or hash) and are reported
    as ``optional_missing`` when absent. ``delete``: the step deletes rows.
    """

    name: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    insert: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    delete: bool = False

    def required(self) -> dict[str, tuple[Privilege, ...]]:
        """Required column -> the privileges the step needs on it."""
        out: dict[str, list[Privilege]] = {}
        wanted: tuple[tuple[tuple[str, ...], Privilege], ...] = (
            (self.read, "SELECT"),
            (self.write, "UPDATE"),
            (self.insert, "INSERT"),
        )
        for columns, privilege in wanted:
            for c in columns:
                out.setdefault(c, []).append(privilege)
        return {c: tuple(p) for c, p in out.items()}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Index:
    """An index the step's SQL relies on (``ON CONFLICT`` on its expression)."""

    table: str
    name: str

    def __str__(self) -> str:
        return f"index {self.name} on {self.table}"


@dataclass(frozen=True)
class Role:
    """Membership the step needs (superuser also passes), e.g. pg_signal_backend."""

    name: str

    def __str__(self) -> str:
        return f"role {self.name}"


@dataclass(frozen=True)
class Extension:
    """A Postgres extension; optional ones only enrich a diagnosis."""

    name: str
    optional: bool = True

    def __str__(self) -> str:
        return f"extension {self.name}"


@dataclass(frozen=True)
class Kube:
    """One Kubernetes verb on a resource in the configured namespace."""

    verb: str
    resource: str
    subresource: str = ""
    group: str = ""

    def __str__(self) -> str:
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {res}{'/' + self.subresource if self.subresource else ''}"


AwsProbe = Literal["rds_instance", "waf_ip_set", "s3_bucket"]


@dataclass(frozen=True)
class Aws:
    """One AWS API call. ``probe``: the read-only call doctor makes to check it (with
    the rule's params); a call without a probe would act, so it is not made."""

    service: str
    operation: str
    probe: AwsProbe | None = None

    def __str__(self) -> str:
        return f"{self.service}:{self.operation}"


@dataclass(frozen=True)
class Http:
    """The DawsOS app (freshness gate) or the configured provider status URLs."""

    peer: Literal["app", "providers"]

    def __str__(self) -> str:
        return "targets.http.app_url" if self.peer == "app" else "targets.http.providers"


@dataclass(frozen=True)
class Cache:
    def __str__(self) -> str:
        return "targets.redis"


@dataclass(frozen=True)
class Param:
    """A rule param the step cannot do without (None by default)."""

    name: str
    alternatives: tuple[str, ...] = ()  # any one of name and these will do

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.alternatives)

    def __str__(self) -> str:
        return " or ".join(f"params.{n}" for n in self.names)


@dataclass(frozen=True)
class Prepared:
    """A statement a YAML runbook step runs: EXPLAINed on the target, never run."""

    sql: str
    binds: int = 0

    def __str__(self) -> str:
        text = " ".join(self.sql.split())
        return f"statement {text[:60]}{'...' if len(text) > 60 else ''}"


Need = Database | Table | Index | Role | Extension | Kube | Aws | Http | Cache | Param | Prepared
