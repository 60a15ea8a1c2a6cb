"""Every background loop runs under one supervisor: never stop silently.

A loop that raises is logged with its traceback, counted in
``remediator_loop_restarts_total{loop}`` and started again after a backoff that
doubles up to ``BACKOFF_MAX`` (and resets once the loop has run a while). Each loop
beats at least once per pass; ``problems()`` names a loop that is dead (it returned,
or has not been restarted yet) or has not beaten within its bound, and ``/readyz``
answers 503 with those names.

A loop the supervisor restarts starts from scratch: loops keep their progress in the
state store, never in their own locals, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from remediator import logs
from remediator.cancelling import cancel_and_wait, describe
from remediator.metrics import Metrics

log = logs.get("remediator.supervisor")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 10.0
# A loop that ran this long before it failed is not crash-looping: back off anew.
STEADY_AFTER = 60.0
# How long stop() waits for a loop to end once cancelled.
STOP_WITHIN = 5.0

LoopFactory = Callable[[], Awaitable[None]]


@dataclass
class _Loop:
    name: str
    factory: LoopFactory
    stall_after: float
    last_beat: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    alive: bool = False
    restarts: int = 0


class Supervisor:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._loops: dict[str, _Loop] = {}
        self._stopping = False

    def spawn(self, name: str, factory: LoopFactory, *, stall_after: float) -> None:
        """Run ``factory()`` for ever; it must call ``beat(name)`` every pass."""
        loop = _Loop(name, factory, stall_after)
        self._loops[name] = loop
        loop.task = asyncio.create_task(self._keep(loop), name=name)

    def beat(self, name: str) -> None:
        loop = self._loops.get(name)
        if loop is not None:
            loop.last_beat = time.monotonic()

    def problems(self) -> list[str]:
        now = time.monotonic()
        out = []
        for loop in self._loops.values():
            if not loop.alive:
                out.append(f"loop {loop.name} is not running (restarts: {loop.restarts})")
            elif now - loop.last_beat > loop.stall_after:
                out.append(
                    f"loop {loop.name} stalled: no progress for {now - loop.last_beat:.0f} s"
                )
        return out

    async def _keep(self, loop: _Loop) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping:
            started = time.monotonic()
            loop.alive = True
            loop.last_beat = started
            try:
                await loop.factory()
                raise RuntimeError("loop returned")  # loops run for ever
            except asyncio.CancelledError:
                loop.alive = False
                raise
            except Exception:
                loop.alive = False
                if self._stopping:
                    return
                loop.restarts += 1
                self.metrics.loop_restarts.labels(loop.name).inc()
                if time.monotonic() - started > STEADY_AFTER:
                    backoff = BACKOFF_FIRST
                log.exception("loop_crashed", loop=loop.name, restart_in=round(backoff, 2))
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    def task(self, name: str) -> asyncio.Task[None] | None:
        loop = self._loops.get(name)
        return loop.task if loop is not None else None

    async def stop(self, names: list[str] | None = None) -> None:
        """Stop these loops (all by default) within ``STOP_WITHIN`` s; never raises.
        A loop that will not stop is logged by name and left behind: shutdown goes on."""
        chosen = [loop for loop in self._loops.values() if names is None or loop.name in names]
        if names is None:
            self._stopping = True
        tasks = [loop.task for loop in chosen if loop.task is not None]
        stuck = await cancel_and_wait(tasks, within=STOP_WITHIN)
        if stuck:
            log.error("loops_would_not_stop", loops=describe(stuck), within=STOP_WITHIN)
        for loop in chosen:
            loop.alive = False
            self._loops.pop(loop.name, None)
