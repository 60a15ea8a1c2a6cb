"""Work the maintenance loop hands off: it schedules, it never runs a step inline.

Resuming a run, an undo, an approved step, a run woken from a wait: each is a task
of its own here, keyed (a run or an approval is never scheduled twice at once) and
bounded (``room()``: the maintenance pass claims only as much as there is room for).
So approvals, undos, expiry and escalations never wait behind a long step, and a
failure in one item is logged and costs only that item: its state in the store
(a lease, a claim) lets this or another replica take it up again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from remediator import logs
from remediator.cancelling import describe, finish_or_cancel
from remediator.errors import StateUnavailable

log = logs.get("remediator.background")


class Background:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def room(self) -> int:
        return max(0, self.limit - len(self._tasks))

    def busy(self, key: str) -> bool:
        return key in self._tasks

    def submit(self, key: str, work: Coroutine[Any, Any, None]) -> bool:
        """Start ``work`` unless ``key`` is already running; False if it was."""
        if key in self._tasks:
            work.close()
            return False
        task = asyncio.create_task(self._guarded(key, work), name=f"background:{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return True

    async def _guarded(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except StateUnavailable as exc:
            log.warning("background_state_unavailable", work=key, error=str(exc))
        except Exception:
            log.exception("background_failed", work=key)

    async def stop(self, grace: float) -> None:
        """Let running work finish for ``grace`` seconds, then cancel the rest (its
        lease or claim in the store lets a replica take it up again)."""
        stuck = await finish_or_cancel(list(self._tasks.values()), grace=grace, within=grace)
        if stuck:
            log.error("background_would_not_stop", work=describe(stuck))
