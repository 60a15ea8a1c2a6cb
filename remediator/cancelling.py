"""Stop tasks for certain, within a bound.

A single ``task.cancel()`` is not enough on Python 3.11: ``asyncio.wait_for``
returns the inner result instead of raising when the cancellation arrives in the
same loop iteration as that result (CPython gh-86296, fixed in 3.12), so a loop
written ``while True: await wait_for(...)`` can swallow one cancellation and go on
for ever. A shutdown that cancels once and then awaits would hang until the
process manager's SIGKILL. Here a task is cancelled again until it ends, and
whatever is still running after ``within`` seconds is handed back, not awaited,
so the caller can log it and finish the shutdown anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

# How often a task that survived its cancellation is cancelled again.
RECANCEL_EVERY = 0.1


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object]], *, within: float
) -> set[asyncio.Task[object]]:
    """Cancel ``tasks`` until each has ended or ``within`` seconds have passed;
    return the ones still running (normally none). Never raises on their behalf."""
    alive = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + within
    while alive:
        for task in alive:
            task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _done, pending = await asyncio.wait(alive, timeout=min(RECANCEL_EVERY, left))
        alive = set(pending)
    return alive


async def finish_or_cancel(
    tasks: Iterable[asyncio.Task[object]], *, grace: float, within: float
) -> set[asyncio.Task[object]]:
    """Let ``tasks`` run for ``grace`` seconds, then cancel the rest for at most
    ``within`` seconds; return those that would not stop."""
    pending = {task for task in tasks if not task.done()}
    if pending and grace > 0:
        _done, still = await asyncio.wait(pending, timeout=grace)
        pending = set(still)
    return await cancel_and_wait(pending, within=within)


def describe(tasks: Iterable[asyncio.Task[object]]) -> list[str]:
    """Task names and where each is suspended, for the log line that names them."""
    out = []
    for task in tasks:
        frames = task.get_stack(limit=1)
        where = f"{frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else "not started"
        out.append(f"{task.get_name()} at {where}")
    return sorted(out)
