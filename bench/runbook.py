"""BENCH-TTM: the runbook of the time-to-mitigation scenario.

Its first (and only) step is a mitigation that is one SQL UPDATE on the real
Postgres target: it stamps the alert's row with ``clock_timestamp()`` and counts
the hit, so the bench can cross-check the daemon's histogram against commit times
and prove each alert was mitigated exactly once. It is a real plugin: the engine
runs it through the same guards, step recording and pages as the DawsOS runbooks.

The fingerprint reaches SQL only as a parameter (and the model has already
checked it is hex); the lock target is the instance label, checked by a regex.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from remediator.engine.context import StepContext
from remediator.engine.registry import Registry
from remediator.engine.steps import Done, Runbook, Step, StepFailed, describe
from remediator.errors import InputRejected

ID = "BENCH-TTM"
ALERTNAME = "BenchMitigate"

TARGET_SCHEMA = """
CREATE TABLE bench_mitigations (
    fingerprint TEXT PRIMARY KEY,
    hits INTEGER NOT NULL DEFAULT 0,
    mitigated_at TIMESTAMPTZ
)
"""

UPDATE = (
    "UPDATE bench_mitigations SET mitigated_at = clock_timestamp(), hits = hits + 1"
    " WHERE fingerprint = $1"
)

_INSTANCE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}(:[0-9]{1,5})?")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def target(labels: Mapping[str, str], params: Any) -> str:
    instance = labels.get("instance", "")
    if not _INSTANCE.fullmatch(instance):
        raise InputRejected("instance", "not a host[:port]")
    return instance


async def mitigate(*, ctx: StepContext, **_: Any) -> Done:
    tag = await ctx.clients.need("database").execute(UPDATE, ctx.alert.fingerprint)
    if tag != "UPDATE 1":
        raise StepFailed(f"expected one row for the fingerprint, got {tag!r}")
    return Done("stamped the alert's row")


RUNBOOK = Runbook(
    id=ID,
    title="Bench: one UPDATE on the target",
    severity="P3",
    params=Params,
    target=target,
    steps=(
        Step(
            name="stamp",
            kind="mitigate",
            title="Stamp the alert's row with the commit time",
            run=mitigate,
            render=describe(UPDATE),
            mutates=True,
            attempts=1,
        ),
    ),
)

RULES_YAML = f"""\
rules:
  - name: bench-mitigate
    matchers: ['alertname="{ALERTNAME}"']
    runbook: {ID}
"""


def register(registry: Registry) -> None:
    registry.register(RUNBOOK)
