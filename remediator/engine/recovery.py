"""Recovery: a run whose owner died (its lease ran out), or that the kill switch or
a wait parked, goes on here, on whichever replica claimed it, without redoing a
completed step. Maintenance (engine/upkeep.py) finds and claims such runs; the
leases they are claimed by are kept in engine/base.py.
"""

from __future__ import annotations

from remediator.engine.base import run_log
from remediator.engine.fire import Firing
from remediator.state.records import Run


class Recovery(Firing):
    async def maintain(self) -> None:
        """One pass of the background work every replica does (engine/upkeep.py)."""
        await self.upkeep.run()

    async def resume(self, run: Run, *, parked: bool = False) -> None:
        """Finish a run whose owner died: never redo a completed step."""
        runbook = self.registry.get(run.runbook)
        if runbook is None:
            return
        run_log(run).warning("run_resumed", state=run.state)
        if run.lease_until is not None:  # a claimed run always has one
            self._leases[run.id] = run.lease_until
        if parked and run.undo_state == "requested":
            # Resolved while it was parked: nothing more to do but undo what it did.
            # Only a parked run: it stopped at the gate, so none of its steps is left
            # "started". A run whose owner died mid-step (its resolve may have come
            # meanwhile) goes through fire(), which settles that step (a read is run
            # again, a mutation of unknown outcome is failed and told), then undoes.
            with self._executing(run.id):
                await self._finish_fire(run, runbook, None)
        elif run.state == "running":
            await self.fire(run, runbook, self._current_rule(run.rule))
        elif run.state == "undoing":
            await self.undo(run)
