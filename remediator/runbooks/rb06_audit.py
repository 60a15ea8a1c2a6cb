"""RB-06 step 3, read-only, as actions: the '403_idor' audit rows and the portfolio
tables without RLS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, StepOutcome
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


@dataclass(frozen=True)
class IdorAudit:
    hours: int
    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_IDOR, (self.hours, self.limit))

    async def execute(self, clients: Clients) -> StepOutcome:
        hours = self.hours
        rows = await clients.need_database().fetch(_IDOR, hours, self.limit)
        users = sorted({str(r["user_id"]) for r in rows if r["user_id"] is not None})
        ips = sorted(
            {
                str(r["meta_json"].get("ip_address"))[:64]
                for r in rows
                if isinstance(r["meta_json"], Mapping) and r["meta_json"].get("ip_address")
            }
        )
        n = f"{len(rows)}{'+' if len(rows) >= self.limit else ''}"
        if not rows:
            return Done(
                f"no '403_idor' audit rows in the last {hours} h",
                data={"count": 0, "users": [], "ips": []},
            )
        return Done(
            f"{n} '403_idor' audit rows in the last {hours} h from"
            f" {len(users)} users ({abbreviated(users)}), addresses {abbreviated(ips)}: RLS may"
            " be missing or wrong if many",
            data={"count": len(rows), "users": users, "ips": ips},
        )


@step(
    "idor_audit",
    "diagnose",
    "403_idor audit rows (RLS bypass attempts)",
    mutates=False,
    timeout=15.0,
)
def idor_audit(ctx: StepContext[Params]) -> IdorAudit:
    p = ctx.params
    return IdorAudit(p.idor_hours, p.idor_rows)


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


@dataclass(frozen=True)
class RlsGaps:
    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_RLS, ())

    async def execute(self, clients: Clients) -> StepOutcome:
        rows = await clients.need_database().fetch(_RLS)
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


@step("rls_gaps", "diagnose", "Portfolio tables without RLS policies", mutates=False, timeout=15.0)
def rls_gaps(ctx: StepContext) -> RlsGaps:
    return RlsGaps()
