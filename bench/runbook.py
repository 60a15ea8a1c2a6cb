"""The bench runbooks: BENCH-TTM (scenario 2) and those of scenario 6 (P0 under load).

BENCH-TTM's first (and only) step is a mitigation that is one SQL UPDATE on the real
Postgres target: it stamps the alert's row with ``clock_timestamp()`` and counts
the hit, so the bench can cross-check the daemon's histogram against commit times
and prove each alert was mitigated exactly once. It is a real plugin: the engine
runs it through the same guards, step recording and pages as the DawsOS runbooks.

The fingerprint reaches SQL only as a parameter (and the model has already
checked it is hex); the lock target is the instance label, checked by a regex.

Scenario 6 (time to the first P0 page, bench/p0.py) adds three, on the same target:
  BENCH-P2    BENCH-TTM at severity P2: the 1,000 alerts/s load (alert BenchLoad)
  BENCH-PARK  P3; its one step answers Wait for PARK_SECONDS (a build Job still
              running), so its runs sit parked, holding no worker (alert BenchPark)
  BENCH-P0    P0, page_first: pages before its one read-only diagnose step, which
              reads the alert's target row (alert BenchP0)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict

from remediator.errors import InputRejected
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Step, StepFailed, Wait, describe

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
    tag = await ctx.clients.need_database().execute(UPDATE, ctx.alert.fingerprint)
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


# --------------------------------------------------------- scenario 6: P0 under load

P2_ID = "BENCH-P2"
P2_ALERTNAME = "BenchLoad"
PARK_ID = "BENCH-PARK"
PARK_ALERTNAME = "BenchPark"
P0_ID = "BENCH-P0"
P0_ALERTNAME = "BenchP0"
# Longer than any bench run: a parked run is never woken while the bench measures.
PARK_SECONDS = 600.0

P2_RUNBOOK = replace(RUNBOOK, id=P2_ID, title="Bench: P2 load, one UPDATE", severity="P2")

PEEK = "SELECT hits FROM bench_mitigations WHERE fingerprint = $1"


async def await_build(*, ctx: StepContext, **_: Any) -> Wait:
    return Wait("the build is still running", PARK_SECONDS)


async def peek(*, ctx: StepContext, **_: Any) -> Done:
    rows = await ctx.clients.need_database().fetch(PEEK, ctx.alert.fingerprint)
    return Done(f"read {len(rows)} target row(s)")


PARK_RUNBOOK = Runbook(
    id=PARK_ID,
    title="Bench: a long wait (parks its run)",
    severity="P3",
    params=Params,
    target=target,
    steps=(
        Step(
            name="await_build",
            kind="diagnose",
            title="Wait for the build Job",
            run=await_build,
            render=describe(f"wait {PARK_SECONDS:g} s"),
            attempts=1,
            idempotent=True,
        ),
    ),
)

P0_RUNBOOK = Runbook(
    id=P0_ID,
    title="Bench: P0, paged first",
    severity="P0",
    params=Params,
    target=target,
    page_first=True,
    steps=(
        Step(
            name="peek",
            kind="diagnose",
            title="Read the alert's target row",
            run=peek,
            render=describe(PEEK),
            attempts=1,
            idempotent=True,
        ),
    ),
)

P0_RULES_YAML = f"""\
rules:
  - name: bench-p2-load
    matchers: ['alertname="{P2_ALERTNAME}"']
    runbook: {P2_ID}
  - name: bench-park
    matchers: ['alertname="{PARK_ALERTNAME}"']
    runbook: {PARK_ID}
  - name: bench-p0
    matchers: ['alertname="{P0_ALERTNAME}"']
    runbook: {P0_ID}
"""


def register(registry: Registry) -> None:
    for rb in (RUNBOOK, P2_RUNBOOK, PARK_RUNBOOK, P0_RUNBOOK):
        registry.register(rb)
