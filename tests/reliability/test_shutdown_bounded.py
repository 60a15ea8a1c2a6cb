"""SIGTERM always ends the daemon: a task that swallows a cancellation cannot hang it.

On Python 3.11, ``asyncio.wait_for`` hands back the inner result instead of raising
when the cancellation lands in the same loop iteration as that result (CPython
gh-86296), so a supervised loop can survive the one ``cancel()`` shutdown sent it.
The daemon's loops are written that way, and a CI run was SIGKILLed after 15 s of
waiting for one. These tests build that race for real and check that every stop
path (the supervisor, background work, the in-flight helpers) still ends.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import structlog
from structlog.testing import capture_logs

from remediator.background import Background
from remediator.cancelling import cancel_and_wait, describe, finish_or_cancel
from remediator.metrics import Metrics
from remediator.supervisor import Supervisor


async def _swallows_once(started: asyncio.Event, swallowed: list[bool]) -> None:
    """A loop that survives exactly one cancellation, as the wait_for race makes it."""
    started.set()
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)


async def _never_stops(started: asyncio.Event, release: asyncio.Event) -> None:
    """Ignores every cancellation until the test releases it."""
    started.set()
    while not release.is_set():
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the race is fixed in 3.12")
async def test_wait_for_really_swallows_a_cancellation_on_311() -> None:
    """The premise: a cancel that arrives with the result is lost on 3.11."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    got: list[int] = []

    async def loop() -> None:
        while True:
            got.append(await asyncio.wait_for(queue.get(), 5.0))

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # parked in wait_for
    queue.put_nowait(1)  # the inner get completes ...
    await asyncio.sleep(0)  # ... its result is delivered to wait_for's waiter ...
    task.cancel()  # ... and the cancellation arrives in the same iteration
    await asyncio.sleep(0.05)
    assert got == [1] and not task.done(), "the cancellation was not swallowed"
    assert await cancel_and_wait([task], within=2.0) == set()
    assert task.cancelled()


async def test_cancel_and_wait_cancels_again_until_the_task_ends() -> None:
    started, swallowed = asyncio.Event(), []
    task = asyncio.create_task(_swallows_once(started, swallowed))
    await started.wait()
    assert await cancel_and_wait([task], within=2.0) == set()
    assert swallowed == [True] and task.cancelled()


async def test_a_task_that_never_stops_is_handed_back_within_the_bound() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_never_stops(started, release), name="stubborn")
    try:
        await started.wait()
        began = time.monotonic()
        stuck = await cancel_and_wait([task], within=0.3)
        assert stuck == {task}
        assert time.monotonic() - began < 5.0  # bounded, not "until SIGKILL"
        assert describe(stuck)[0].startswith("stubborn at ")
        assert "test_shutdown_bounded.py" in describe(stuck)[0]
    finally:  # an unstoppable task left behind would hang the event loop's teardown
        release.set()
        await asyncio.wait([task], timeout=5)


async def test_finish_or_cancel_lets_work_finish_within_its_grace() -> None:
    async def quick() -> None:
        await asyncio.sleep(0.05)

    task = asyncio.create_task(quick())
    assert await finish_or_cancel([task], grace=2.0, within=1.0) == set()
    assert task.done() and not task.cancelled()


async def test_supervisor_stop_ends_a_loop_that_swallowed_its_cancellation() -> None:
    supervisor = Supervisor(Metrics())
    started, swallowed = asyncio.Event(), []
    supervisor.spawn("dispatch", lambda: _swallows_once(started, swallowed), stall_after=60)
    task = supervisor.task("dispatch")
    assert task is not None
    await started.wait()
    await asyncio.wait_for(supervisor.stop(["dispatch"]), 10)
    assert swallowed == [True] and task.done()
    assert supervisor.task("dispatch") is None


async def test_supervisor_stop_gives_up_on_a_loop_that_never_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import remediator.supervisor as supervisor_mod

    monkeypatch.setattr(supervisor_mod, "STOP_WITHIN", 0.3)
    # A logger proxy no earlier test has cached, so capture_logs sees its lines.
    monkeypatch.setattr(supervisor_mod, "log", structlog.get_logger("remediator.supervisor"))
    supervisor = Supervisor(Metrics())
    started, release = asyncio.Event(), asyncio.Event()
    supervisor.spawn("maintenance", lambda: _never_stops(started, release), stall_after=60)
    task = supervisor.task("maintenance")
    assert task is not None
    try:
        await started.wait()
        with capture_logs() as logged:
            await asyncio.wait_for(supervisor.stop(), 10)
        assert not task.done()
        [entry] = [e for e in logged if e["event"] == "loops_would_not_stop"]
        assert entry["loops"][0].startswith("maintenance at ")
        assert supervisor.problems() == []  # stopped loops are no longer reported
    finally:  # an unstoppable task left behind would hang the event loop's teardown
        release.set()
        await asyncio.wait([task], timeout=5)


async def test_background_stop_is_bounded_when_work_ignores_cancellation() -> None:
    background = Background(limit=4)
    started, swallowed = asyncio.Event(), []
    assert background.submit("run:1", _swallows_once(started, swallowed))
    await started.wait()
    await asyncio.wait_for(background.stop(grace=0.2), 10)
    assert swallowed == [True]
    assert not background.busy("run:1")
