"""RB-06 steps 5 and 6, as actions: the logins from the source address, then (on
approval) force those accounts to reset their passwords and notify them.

Acts only on the accounts this run's login lookup found (``None`` in an action: the
lookup has no result yet, so a plan shows a placeholder and a run fails).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from remediator import validation
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepOutcome
from remediator.runbooks.rb06_params import (
    MAX_LOGIN_ADDRESSES,
    Logins,
    Params,
    abbreviated,
    addresses_of,
    login_users,
    source_network,
)

RESET_MESSAGE = "Security incident detected. Please reset your password."
_UNKNOWN = "<the accounts that logged in from the address>"


def _found(ctx: StepContext) -> tuple[str, ...] | None:
    found = ctx.found("logins_from_ip", Logins)
    return None if found is None or found.user_ids is None else tuple(found.user_ids)


# ----------------------------------------------------------- 5 logins from IP

_LOGINS = """
SELECT user_id, max(created_at) AS last_login, count(*) AS logins
FROM analytics_events
WHERE event_type = 'login'
  AND meta_json->>'ip_address' = ANY($1::text[])
  AND created_at > now() - make_interval(days => $2)
  AND user_id IS NOT NULL
GROUP BY user_id
ORDER BY last_login DESC, user_id
"""


@dataclass(frozen=True)
class LoginsFromIp:
    net: validation.IPNetwork | None  # None: the alert carries no source_ip
    days: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        if self.net is None:
            return "(no source_ip label: nothing to look up)"
        addresses = addresses_of(self.net) or [f"<every address of {self.net}>"]
        return render_sql(_LOGINS, (addresses, self.days))

    async def execute(self, clients: Clients) -> StepOutcome:
        net, days = self.net, self.days
        # The empty list tells the approve steps there is nobody to act on, by design.
        if net is None:
            return Skip(
                "the alert carries no source_ip label: no address to look up",
                data={"user_ids": []},
            )
        addresses = addresses_of(net)
        if addresses is None:
            return Skip(
                f"{net} holds more than {MAX_LOGIN_ADDRESSES} addresses: look up logins by hand",
                data={"user_ids": [], "too_broad": True},
            )
        rows = await clients.need_database().fetch(_LOGINS, addresses, days)
        users = [str(r["user_id"]) for r in rows]
        if not users:
            return Done(
                f"no logins from {net} in the last {days} days",
                data={"user_ids": [], "network": str(net)},
            )
        return Done(
            f"{len(users)} accounts logged in from {net} in the last {days} days:"
            f" {abbreviated(users)}",
            data={"user_ids": users, "network": str(net)},
        )


@step("logins_from_ip", "diagnose", "Recent logins from the source IP", mutates=False, timeout=15.0)
def logins_from_ip(ctx: StepContext[Params]) -> LoginsFromIp:
    p = ctx.params
    return LoginsFromIp(source_network(ctx, for_blocking=False), p.login_days)


# --------------------------------------------------- 5 force password resets

_LOCK_USERS = """
SELECT id, password_reset_required
FROM users
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
"""
_RESET = """
UPDATE users
SET password_reset_required = TRUE
WHERE id = ANY($1::uuid[]) AND NOT password_reset_required
"""


@dataclass(frozen=True)
class ForcePasswordResets:
    users: tuple[str, ...] | None
    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        users = _UNKNOWN if self.users is None else list(self.users[: self.limit])
        lock = render_sql(_LOCK_USERS, (users,))
        reset = render_sql(_RESET, ("<those not yet reset>",))
        return f"BEGIN;\n{lock}\n{reset}\nCOMMIT;"

    async def execute(self, clients: Clients) -> StepOutcome:
        users = login_users(self.users)
        if not users:
            return Skip("no account to reset: no login from the alert's address was found")
        chosen, over = users[: self.limit], users[self.limit :]
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_LOCK_USERS, [uuid.UUID(u) for u in chosen])
            to_set = [r["id"] for r in rows if not r["password_reset_required"]]
            if to_set:
                await tx.execute(_RESET, to_set)
        changed = sorted(str(u) for u in to_set)
        pending = sorted(str(r["id"]) for r in rows if r["password_reset_required"])
        notes = []
        if pending:
            notes.append(f"{len(pending)} already had a reset pending")
        if over:
            notes.append(
                f"{len(over)} over the limit of {self.limit} left for a human: {abbreviated(over)}"
            )
        if not changed:
            return Skip("; ".join(["no reset forced", *notes]))
        # Kept on resolve: a compromised account stays reset. Previous values recorded.
        return Done(
            "; ".join(
                [
                    f"forced a password reset for {len(changed)} accounts: {abbreviated(changed)}",
                    *notes,
                ]
            ),
            data={"reset": changed, "already_pending": pending},
            changes={"users": [{"id": u, "password_reset_required": False} for u in changed]},
        )


@step(
    "force_password_resets",
    "mitigate",
    "Force password resets for those accounts",
    mutates=True,
    approval="approve",
    needs=("database",),
    idempotent=True,
    timeout=15.0,
)
def force_password_resets(ctx: StepContext[Params]) -> ForcePasswordResets:
    return ForcePasswordResets(_found(ctx), ctx.params.max_password_resets)


# ------------------------------------------------------------ 6 notify users

_NOTIFY = """
INSERT INTO notifications (user_id, alert_id, payload_json)
SELECT u, $2, $3::jsonb FROM unnest($1::uuid[]) AS t(u)
ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')) DO NOTHING
RETURNING id, user_id
"""


@dataclass(frozen=True)
class NotifyAccounts:
    users: tuple[str, ...] | None
    limit: int
    alert_id: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        users = _UNKNOWN if self.users is None else list(self.users[: self.limit])
        return render_sql(_NOTIFY, (users, self.alert_id, {"message": RESET_MESSAGE}))

    async def execute(self, clients: Clients) -> StepOutcome:
        users = login_users(self.users)
        if not users:
            return Skip("nobody to notify: no login from the alert's address was found")
        chosen, over = users[: self.limit], users[self.limit :]
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(
                _NOTIFY, [uuid.UUID(u) for u in chosen], self.alert_id, {"message": RESET_MESSAGE}
            )
        notified = sorted(str(r["user_id"]) for r in rows)
        notes = []
        if len(notified) < len(chosen):
            notes.append(f"{len(chosen) - len(notified)} already notified today")
        if over:
            notes.append(f"{len(over)} over the limit of {self.limit} left for a human")
        if not notified:
            return Skip("; ".join(["nobody notified", *notes]))
        return Done(
            "; ".join([f"notified {len(notified)} accounts: {abbreviated(notified)}", *notes]),
            data={"notified": notified},
            changes={"notifications": sorted(int(r["id"]) for r in rows)},
        )


@step(
    "notify_users",
    "notify",
    "Notify the affected users",
    mutates=True,
    approval="approve",
    needs=("database",),
    idempotent=True,
    timeout=15.0,
)
def notify_users(ctx: StepContext[Params]) -> NotifyAccounts:
    p = ctx.params
    return NotifyAccounts(_found(ctx), p.max_notifications, p.notification_alert_id)
