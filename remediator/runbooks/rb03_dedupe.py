"""RB-03 step 4, as actions: check for duplicate notifications and the unique index,
then (on approval) delete the duplicates, never a group's first notification.

Duplicates are grouped by UTC day, as the unique index is (see rb03_alert_storm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks.rb03_params import Params

UNIQUE_INDEX = "uq_notify_user_alert_day"


# -------------------------------------------------------------- 4 dedupe check

_WINDOW = (
    "(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => $1)) AT TIME ZONE 'UTC'"
)
_DUPLICATES = f"""
SELECT user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AS day,
       COUNT(*) AS n
FROM notifications
WHERE created_at >= {_WINDOW}
GROUP BY user_id, alert_id, day
HAVING COUNT(*) > 1
ORDER BY n DESC, alert_id, user_id
"""
_INDEX = """
SELECT i.indexdef, x.indisunique, x.indisvalid
FROM pg_indexes i
JOIN pg_namespace ns ON ns.nspname = i.schemaname
JOIN pg_class c ON c.relname = i.indexname AND c.relnamespace = ns.oid
JOIN pg_index x ON x.indexrelid = c.oid
WHERE i.schemaname = current_schema() AND i.tablename = 'notifications'
  AND i.indexname = $1
"""


@dataclass(frozen=True)
class CheckDedupe:
    days: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_DUPLICATES, (self.days,)) + "\n" + render_sql(_INDEX, (UNIQUE_INDEX,))

    async def execute(self, clients: Clients) -> StepOutcome:
        db = clients.need_database()
        groups = await db.fetch(_DUPLICATES, self.days)
        index = await db.fetchrow(_INDEX, UNIQUE_INDEX)
        extra = sum(int(g["n"]) - 1 for g in groups)
        index_ok = bool(index and index["indisunique"] and index["indisvalid"])
        if index is None:
            idx = f"unique index {UNIQUE_INDEX} is MISSING (root cause: dedupe not enforced)"
        elif not index_ok:
            idx = f"index {UNIQUE_INDEX} exists but is not a valid unique index"
        else:
            idx = f"unique index {UNIQUE_INDEX} present"
        sample = [
            {
                "user_id": str(g["user_id"]),
                "alert_id": g["alert_id"],
                "day": g["day"].date().isoformat(),
                "count": int(g["n"]),
            }
            for g in groups[:20]
        ]
        return Done(
            f"{len(groups)} duplicate (user, alert, day) groups with {extra} extra rows"
            f" since {self.days} day(s) ago; {idx}",
            data={
                "groups": len(groups),
                "extra_rows": extra,
                "sample": sample,
                "index_present": index is not None,
                "index_ok": index_ok,
            },
        )


@step("check_dedupe", "diagnose", "Check notification dedupe", mutates=False)
def check_dedupe(ctx: StepContext[Params]) -> CheckDedupe:
    return CheckDedupe(ctx.params.dedupe_days)


# ---------------------------------------------------- 4 delete duplicates (approve)

_DUP_ROWS = f"""
SELECT n.id, n.user_id, n.alert_id, n.payload_json, n.created_at
FROM notifications n
JOIN (SELECT id, row_number() OVER (
          PARTITION BY user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')
          ORDER BY id) AS rn
      FROM notifications
      WHERE created_at >= {_WINDOW}) d ON d.id = n.id
WHERE d.rn > 1
ORDER BY n.id
LIMIT $2
FOR UPDATE OF n
"""
_DELETE = "DELETE FROM notifications WHERE id = ANY($1::bigint[])"


class Duplicates(BaseModel):
    """What check_dedupe counted, for the approval's text."""

    extra_rows: int | None = None  # None: the check recorded no count


@dataclass(frozen=True)
class DeleteDuplicates:
    days: int
    max_delete: int
    counted: int | None  # the extra rows check_dedupe saw (None: not yet checked)

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        # Before check_dedupe has run (a plan) the line is there too, its count to come.
        if self.counted is None:
            note = (
                "-- check_dedupe found <how many extra rows; with none, approving deletes nothing>"
            )
        else:
            note = f"-- check_dedupe found {self.counted} extra rows" + (
                "; approving now would delete nothing" if not self.counted else ""
            )
        return (
            f"BEGIN;\n{render_sql(_DUP_ROWS, (self.days, self.max_delete + 1))}\n"
            f"{_DELETE}\n-- $1 = <the ids selected above; rows recorded>\n{note}\nCOMMIT;"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_DUP_ROWS, self.days, self.max_delete + 1)
            if not rows:
                return Skip("no duplicate notifications to delete")
            if len(rows) > self.max_delete:
                raise StepFailed(
                    f"more than max_delete={self.max_delete} duplicates; nothing deleted,"
                    " dedupe in batches by hand"
                )
            await tx.execute(_DELETE, [r["id"] for r in rows])
        deleted = [
            {
                "id": r["id"],
                "user_id": str(r["user_id"]),
                "alert_id": r["alert_id"],
                "payload_json": r["payload_json"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]
        return Done(
            f"deleted {len(rows)} duplicate notifications (the first of each user, alert"
            " and day kept)",
            data={"deleted": len(rows)},
            changes={"deleted": deleted},
        )


@step(
    "delete_duplicates",
    "mitigate",
    "Delete duplicate notifications",
    mutates=True,
    approval="approve",
    needs=("database",),
)
def delete_duplicates(ctx: StepContext[Params]) -> DeleteDuplicates:
    p = ctx.params
    found = ctx.found("check_dedupe", Duplicates)
    return DeleteDuplicates(
        p.dedupe_days, p.max_delete, None if found is None else found.extra_rows
    )
