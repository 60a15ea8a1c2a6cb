"""The operator commands' two ways to the state: the store itself, or the daemon's API.

Both answer in the JSON shapes of the operator API, so the CLI prints the same
whichever way it went. Errors name the place they looked in ("no approval 7 in state
store /var/lib/remediator/state.db"), so a wrong config is visible at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from remediator.clients.operator_api import OperatorApi
from remediator.errors import ConfigError, RemediatorError
from remediator.ops.locate import ApiPlace, Place, StorePlace
from remediator.settings import Settings
from remediator.state import audit
from remediator.state.backend import holds_a_store
from remediator.state.store import StateStore


class OperatorError(RemediatorError):
    """The command could not do what was asked (exit 1); the message says why."""


@dataclass(frozen=True, slots=True)
class Decided:
    id: int
    step: str
    run_id: str
    decision: str
    by: str


class Operator(Protocol):
    where: str

    async def actions(self, limit: int) -> list[dict[str, Any]]: ...
    async def approvals(self) -> list[dict[str, Any]]: ...
    async def decide(self, approval_id: int, decision: str, who: str) -> Decided: ...
    async def set_paused(self, paused: bool, who: str) -> None: ...
    async def close(self) -> None: ...


def who_may_decide(settings: Settings) -> str:
    """Who can approve or reject, as the page and `approvals` tell it."""
    names = list(settings.auth.named_operator_tokens())
    slack = settings.approvals.slack
    approvers = sorted(set(slack.approvers.values())) if slack is not None else []
    parts = [f"operator tokens {', '.join(names)}" if names else "any local operator"]
    if approvers:
        parts.append(f"Slack {', '.join(approvers)}")
    parts.append("the CLI with access to the state store")
    return "; ".join(parts)


class StoreOperator:
    def __init__(self, store: StateStore, place: StorePlace) -> None:
        self.store = store
        self.settings = place.settings
        self.where = place.describe()

    @classmethod
    async def open(cls, place: StorePlace) -> StoreOperator:
        url = place.settings.state.get_secret_value()
        # Opening migrates: on a database no daemon has used, that would create an
        # empty store, and `pause` would hold a kill switch no daemon reads. (A SQLite
        # file that does not exist is refused by locate.)
        postgres = url.startswith(("postgresql://", "postgres://"))
        if postgres and not await holds_a_store(url):
            raise ConfigError(
                f"{place.describe()} holds no remediator state (no daemon has used it);"
                " is this the config the daemon runs with?"
            )
        return cls(await StateStore.open(url), place)

    async def close(self) -> None:
        await self.store.close()

    async def actions(self, limit: int) -> list[dict[str, Any]]:
        return [e.to_json() for e in await audit.actions(self.store, limit)]

    async def approvals(self) -> list[dict[str, Any]]:
        who = who_may_decide(self.settings)
        return [a.to_json() for a in await audit.pending_approvals(self.store, who)]

    async def decide(self, approval_id: int, decision: str, who: str) -> Decided:
        a = await self.store.get_approval(approval_id)
        if a is None:
            raise OperatorError(f"no approval {approval_id} in {self.where}")
        if not await self.store.decide_approval(approval_id, decision, who):
            current = await self.store.get_approval(approval_id)
            state = current.state if current else "?"
            if state == "pending":  # still pending but refused: its time ran out
                state = "expired"
            raise OperatorError(f"approval {approval_id} is {state} ({self.where})")
        return Decided(approval_id, a.step, a.run_id, decision, who)

    async def set_paused(self, paused: bool, who: str) -> None:
        await self.store.set_flag("paused", "1" if paused else "0", who)


class ApiOperator:
    def __init__(self, place: ApiPlace) -> None:
        self.where = place.describe()
        self.api = OperatorApi(place.url, place.token)

    async def close(self) -> None:
        await self.api.aclose()

    async def _call(self, method: str, path: str, **params: str) -> tuple[int, Any]:
        status, body = await self.api.call(method, path, **params)
        if status in (401, 403):
            detail = body.get("detail") if isinstance(body, dict) else None
            raise OperatorError(f"{self.where} refused the operator token: {detail}")
        return status, body

    async def actions(self, limit: int) -> list[dict[str, Any]]:
        _, body = await self._call("GET", "/api/v1/actions", limit=str(limit))
        return list(body["actions"])

    async def approvals(self) -> list[dict[str, Any]]:
        _, body = await self._call("GET", "/api/v1/approvals")
        return list(body["approvals"])

    async def decide(self, approval_id: int, decision: str, who: str) -> Decided:
        verb = "approve" if decision == "approved" else "reject"
        status, body = await self._call("POST", f"/api/v1/actions/{approval_id}/{verb}")
        if status == 404:
            raise OperatorError(f"no approval {approval_id} at {self.where}")
        if status >= 400:
            raise OperatorError(f"{body.get('detail') or body.get('error')} ({self.where})")
        return Decided(
            approval_id, body.get("step", "?"), body.get("run_id", "?"), decision, body["by"]
        )

    async def set_paused(self, paused: bool, who: str) -> None:
        await self._call("POST", "/api/v1/pause" if paused else "/api/v1/resume")


async def connect(place: Place) -> Operator:
    if isinstance(place, ApiPlace):
        return ApiOperator(place)
    return await StoreOperator.open(place)
