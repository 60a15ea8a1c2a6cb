"""RB-06 step 3, read-only: the '403_idor' audit rows and the portfolio tables without RLS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done
from remediator.runbooks import plan
from remediator.runbooks.rb06_params import Params, abbreviated

# -------------------------------------------------------------- 3 IDOR audit

_IDOR = """
SELECT user_id, portfolio_id, action, meta_json, ts
FROM audit_log
WHERE action = '403_idor'
  AND ts > now() - make_interval(hours => $1)
ORDER BY ts DESC
LIMIT $2
"""


async def idor_audit(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    db = ctx.clients.need_database()
    rows = await db.fetch(_IDOR, p.idor_hours, p.idor_rows)
    users = sorted({str(r["user_id"]) for r in rows if r["user_id"] is not None})
    ips = sorted(
        {
            str(r["meta_json"].get("ip_address"))[:64]
            for r in rows
            if isinstance(r["meta_json"], Mapping) and r["meta_json"].get("ip_address")
        }
    )
    n = f"{len(rows)}{'+' if len(rows) >= p.idor_rows else ''}"
    if not rows:
        return Done(
            f"no '403_idor' audit rows in the last {p.idor_hours} h",
            data={"count": 0, "users": [], "ips": []},
        )
    return Done(
        f"{n} '403_idor' audit rows in the last {p.idor_hours} h from"
        f" {len(users)} users ({abbreviated(users)}), addresses {abbreviated(ips)}: RLS may be"
        " missing or wrong if many",
        data={"count": len(rows), "users": users, "ips": ips},
    )


def render_idor_audit(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return plan.sql(_IDOR, p.idor_hours, p.idor_rows)


# --------------------------------------------------------------- 3 RLS gaps

# The runbook's query, plus tables whose policies exist but whose RLS is switched off.
_RLS = """
SELECT t.tablename,
       c.relrowsecurity AS rls_enabled,
       EXISTS (SELECT 1 FROM pg_policies AS p
               WHERE p.schemaname = 'public' AND p.tablename = t.tablename) AS has_policy
FROM pg_tables AS t
JOIN pg_namespace AS n ON n.nspname = t.schemaname
JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = t.tablename
WHERE t.schemaname = 'public'
  AND t.tablename LIKE '%portfolio%'
ORDER BY t.tablename
"""


async def rls_gaps(*, ctx: StepContext, **_: Any) -> Done:
    db = ctx.clients.need_database()
    rows = await db.fetch(_RLS)
    no_policy = [r["tablename"] for r in rows if not r["has_policy"]]
    rls_off = [r["tablename"] for r in rows if r["has_policy"] and not r["rls_enabled"]]
    if not no_policy and not rls_off:
        return Done(
            f"all {len(rows)} portfolio-scoped tables have RLS policies",
            data={"without_policy": [], "rls_disabled": []},
        )
    parts = []
    if no_policy:
        parts.append(f"portfolio-scoped tables WITHOUT an RLS policy: {', '.join(no_policy)}")
    if rls_off:
        parts.append(f"policies present but RLS disabled: {', '.join(rls_off)}")
    return Done("; ".join(parts), data={"without_policy": no_policy, "rls_disabled": rls_off})


def render_rls_gaps(*, ctx: StepContext, **_: Any) -> str:
    return plan.sql(_RLS)
