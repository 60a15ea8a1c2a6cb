"""The guarded session terminate, shared by RB-05 (blockers) and RB-01 (a stuck build).

Both runbooks say "kill if stuck" with ``pg_terminate_backend``. A session is only
ever terminated here when, at the moment of acting (one statement re-checks it all):

- it is the very session that was looked at (pid and ``backend_start``: a pid reused
  by a new connection since the look is never hit);
- it is a client backend of this database and not our own;
- its role is no superuser or replication role and not in ``protected_roles``, and its
  application is not in ``protected_applications``;
- the runbook's own condition still holds (a blocker still blocks someone past the
  threshold; a statement still runs past it);

and at most ``max_terminations`` per run. Each runbook passes its condition as a fixed
SQL fragment of its own (never a value: those are ``$n`` parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.runbook_api.client_protocols import SqlTransaction

# Why a session must be spared (NULL: it may go), with $1 roles and $2 applications.
PROTECTED_REASON = """CASE
           WHEN b.pid = pg_backend_pid() THEN 'our own session'
           WHEN b.datname IS DISTINCT FROM current_database() THEN 'another database'
           WHEN b.backend_type <> 'client backend' THEN 'a ' || b.backend_type
           WHEN r.rolsuper THEN 'superuser role'
           WHEN r.rolreplication THEN 'replication role'
           WHEN b.usename = ANY($1::text[]) THEN 'protected role'
           WHEN b.application_name = ANY($2::text[]) THEN 'protected application'
       END"""


def terminate_sql(condition: str) -> str:
    """The terminate statement: $1 pids, $2 their backend_start, $3 protected roles,
    $4 protected applications, then the condition's own parameters from $5."""
    return f"""
SELECT b.pid, pg_terminate_backend(b.pid) AS terminated
FROM pg_stat_activity AS b
JOIN unnest($1::int[], $2::timestamptz[]) AS v(pid, backend_start)
  ON v.pid = b.pid AND v.backend_start = b.backend_start
LEFT JOIN pg_roles AS r ON r.rolname = b.usename
WHERE b.datname = current_database()
  AND b.pid <> pg_backend_pid()
  AND b.backend_type = 'client backend'
  AND NOT coalesce(r.rolsuper OR r.rolreplication, FALSE)
  AND NOT (b.usename = ANY($3::text[]))
  AND NOT (b.application_name = ANY($4::text[]))
  AND {condition}
"""


class SessionGuard(BaseModel):
    """The params every guarded terminate takes (a runbook's Params inherit them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_terminations: int = Field(3, ge=0, le=20)  # 0: diagnose only
    # Superuser and replication roles are always protected, whatever these say.
    protected_roles: tuple[str, ...] = (
        "postgres",
        "rdsadmin",
        "rdsrepladmin",
        "rds_superuser",
        "rds_replication",
        "replicator",
    )
    protected_applications: tuple[str, ...] = (
        "remediator",
        "pg_dump",
        "pg_restore",
        "pg_basebackup",
    )

    @field_validator("protected_roles", "protected_applications")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 100 or any(not 0 < len(n) <= 63 for n in v):
            raise ValueError("at most 100 names of 1..63 characters")
        return v


class Seen(BaseModel):
    """A session as a look saw it. Its pid and ``backend_start`` find exactly it again
    (a pid reused since is another session, never hit); ``protected`` says why it must
    be spared (None: it may go)."""

    model_config = ConfigDict(frozen=True)

    pid: int
    # NULL where the look may not see the session's details: then it never matches.
    backend_start: datetime | None = None
    user: str | None = None
    application: str | None = None
    protected: str | None = None

    @property
    def who(self) -> str:
        return _who(self.pid, self.user, self.application)


def _who(pid: object, user: object, application: object) -> str:
    return f"pid {pid} ({user}, app {application!r})"


def who(c: Mapping[str, object]) -> str:
    return _who(c["pid"], c["user"], c["application"])


async def terminate_seen(
    db: SqlTransaction, sql: str, chosen: Sequence[Seen], guard: SessionGuard, *binds: object
) -> set[int]:
    """Run ``sql`` (from ``terminate_sql``) on ``chosen``; the pids it terminated."""
    if not chosen:
        return set()
    done = await db.fetch(
        sql,
        [c.pid for c in chosen],
        [c.backend_start for c in chosen],
        list(guard.protected_roles),
        list(guard.protected_applications),
        *binds,
    )
    return {int(r["pid"]) for r in done if r["terminated"]}


async def terminate(
    db: SqlTransaction,
    sql: str,
    chosen: Sequence[Mapping[str, object]],
    guard: SessionGuard,
    *binds: object,
) -> set[int]:
    """``terminate_seen`` for sessions given as mappings with ``pid`` and
    ``backend_start`` (RB-01's stuck statement)."""
    seen = [
        Seen.model_validate({"pid": c["pid"], "backend_start": c["backend_start"]}) for c in chosen
    ]
    return await terminate_seen(db, sql, seen, guard, *binds)


def notes_on(
    *,
    spared: Sequence[Seen],
    over: Sequence[Seen],
    gone: Sequence[Seen],
    limit: int,
    gone_words: str = "no longer there",
) -> list[str]:
    """What a page says about the sessions left alone, and why."""
    out = []
    if spared:
        out.append("spared " + ", ".join(f"{c.who}: {c.protected}" for c in spared))
    if over:
        out.append(
            f"over the limit of {limit} per run, left for a human: "
            + ", ".join(c.who for c in over)
        )
    if gone:
        out.append(f"{gone_words} when re-checked: " + ", ".join(c.who for c in gone))
    return out


def notes(
    *,
    spared: Sequence[Mapping[str, object]],
    over: Sequence[Mapping[str, object]],
    gone: Sequence[Mapping[str, object]],
    limit: int,
    gone_words: str = "no longer there",
) -> list[str]:
    """``notes_on`` for sessions given as mappings (RB-01's stuck statement)."""

    def seen(cs: Sequence[Mapping[str, object]]) -> list[Seen]:
        return [
            Seen.model_validate(
                {k: c[k] for k in ("pid", "user", "application", "protected") if k in c}
            )
            for c in cs
        ]

    return notes_on(
        spared=seen(spared), over=seen(over), gone=seen(gone), limit=limit, gone_words=gone_words
    )
