"""RB-04 step 4's audit: export_pdf events of the last days that carried the provider's
data, by users without an export license, and the S3 key of each export.

The statements name only what the runbook's SQL names (``user_id, created_at,
payload_json, event_type`` of analytics_events; user_licenses); the event's ``id`` is
read when the catalog has one. An export whose event does not list its providers
cannot be cleared, so it counts as a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from remediator.errors import InputRejected
from remediator.runbook_api.client_protocols import SqlDatabase
from remediator.validation import aws as aws_checks

_EXPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", re.ASCII)

# An export whose event does not list its providers cannot be cleared, so it counts.
VIOLATING = """
WITH exports AS (
    SELECT e.id AS id, e.user_id, e.created_at, e.payload_json,
           CASE WHEN jsonb_typeof(e.payload_json -> 'providers') = 'array' THEN EXISTS (
               SELECT 1 FROM jsonb_array_elements_text(e.payload_json -> 'providers') AS p(name)
               WHERE upper(p.name) = upper($1))
           END AS carries_provider
    FROM analytics_events AS e
    WHERE e.event_type = 'export_pdf'
      AND e.created_at > now() - make_interval(days => $2)
)
SELECT x.id, x.user_id, x.created_at, x.payload_json,
       x.carries_provider IS NULL AS providers_unknown
FROM exports AS x
WHERE x.carries_provider IS NOT FALSE
  AND NOT EXISTS (
      SELECT 1 FROM user_licenses AS l
      WHERE l.user_id = x.user_id AND l.provider = $1
        AND l.license_type = ANY($3::text[]))
"""
AUDIT = (
    VIOLATING
    + """ORDER BY x.created_at DESC, x.id DESC
LIMIT $4
"""
)
CONFIRM = f"""
SELECT count(*) AS n, count(*) FILTER (WHERE v.providers_unknown) AS unknown,
       max(v.created_at) AS last
FROM ({VIOLATING}) AS v
"""


def _without_event_id(sql: str) -> str:
    """``sql`` for an analytics_events without an ``id`` column (the runbook's own SQL
    names none): events are then told apart by user and time only."""
    return sql.replace("SELECT e.id AS id,", "SELECT NULL::bigint AS id,")


async def _on_catalog(db: SqlDatabase, sql: str) -> str:
    return sql if "id" in await db.columns("analytics_events") else _without_event_id(sql)


class Violation(BaseModel):
    """One violating export as the audit records it (and the steps after it read it)."""

    event_id: int | None
    user_id: str | None
    created_at: str
    export_id: str | None
    providers_unknown: bool
    key: str | None  # None: no safe S3 key (key_problem says why)
    key_problem: str | None


@dataclass(frozen=True)
class Confirmed:
    """How many violating exports (``unknown`` of them not listing their providers)."""

    n: int
    unknown: int
    last: datetime | None


async def confirm(
    db: SqlDatabase, provider: str, days: int, license_types: Sequence[str]
) -> Confirmed:
    row = await db.fetchrow(await _on_catalog(db, CONFIRM), provider, days, list(license_types))
    if row is None:
        return Confirmed(0, 0, None)
    last = row["last"]
    return Confirmed(
        int(row["n"]), int(row["unknown"]), last if isinstance(last, datetime) else None
    )


async def violations(
    db: SqlDatabase, provider: str, days: int, license_types: Sequence[str], limit: int
) -> list[Violation]:
    """The violating exports, newest first, at most ``limit``."""
    rows = await db.fetch(await _on_catalog(db, AUDIT), provider, days, list(license_types), limit)
    found: list[Violation] = []
    for r in rows:
        user = str(r["user_id"]) if r["user_id"] is not None else None
        payload = r["payload_json"]
        key, problem = export_key(user, payload)
        export_id = payload.get("export_id") if isinstance(payload, Mapping) else None
        found.append(
            Violation(
                event_id=int(r["id"]) if r["id"] is not None else None,
                user_id=user,
                created_at=r["created_at"].isoformat(),
                export_id=export_id[:128] if isinstance(export_id, str) else None,
                providers_unknown=bool(r["providers_unknown"]),
                key=key,
                key_problem=problem,
            )
        )
    return found


def export_key(user_id: str | None, payload: object) -> tuple[str | None, str | None]:
    """The S3 key of an export, from its event payload: (key, None) or (None, problem).

    The runbook's layout is ``<user-uuid>/<export-id>.pdf``; an explicit ``s3_key`` in
    the payload is honoured only inside that user's prefix. The payload was written by
    the application, but a bug there must not make us delete someone else's object.
    """
    if user_id is None:
        return None, "the event has no user (deleted account)"
    if not isinstance(payload, Mapping):
        return None, "the event payload is not an object"
    explicit = payload.get("s3_key")
    if explicit is not None:
        try:
            key = aws_checks.check_key("s3_key", explicit)
        except InputRejected as exc:
            return None, f"bad s3_key: {exc.reason}"
        if not key.startswith(f"{user_id}/") or not key.endswith(".pdf") or "//" in key:
            return None, "s3_key is not a PDF under the user's own prefix"
        return key, None
    export_id = payload.get("export_id")
    if not isinstance(export_id, str) or not _EXPORT_ID.fullmatch(export_id) or ".." in export_id:
        return None, "no usable export_id in the event payload"
    return f"{user_id}/{export_id}.pdf", None
