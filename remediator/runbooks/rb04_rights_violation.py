"""RB-04 Rights registry violation, as declared steps (P1).

Runbook order, automated:

    1 inspect the rights registry row of the provider     diagnose (stops the run if
                                                          the provider is unknown)
    1 the provider's entry in the registry YAML           diagnose (rights_registry)
    2 check the reported user's licenses                  diagnose (``user_id`` label)
    - confirm the violation                               diagnose; corroborates the
                                                          alert (below)
    3 block exports of the provider                       mitigate, auto; records the
                                                          old row
    4 audit 7 days of export_pdf events against
      user_licenses and list the violations               diagnose
    5 revoke the violating PDFs (S3 delete)               approve
    5 notify the users whose PDFs were revoked            approve
    6 grant the missing license (if legitimate)           approve
    on resolve: nothing is undone. Compliance lifts the block by hand; the resolve
    page says so and shows the registry row as it stands.

Gaps closed over the runbook text: the block reads the old row under ``FOR UPDATE``
and records it; the audit counts an export whose event does not say which providers
it carried as a violation candidate (it cannot be cleared); revocation re-checks the
licenses at the time it runs (a license granted since the audit makes that export
legitimate) and only deletes keys under the user's own prefix; users are told their
export was revoked only once it is gone from S3; every approve step is bounded.

A payload is a claim: exports are blocked only when the database shows the violation.
The provider must be one whose data needs a license to export (``licensed_providers``:
the rights registry's ``require_license: true``; the provider_rights row cannot say so,
it is what may be misconfigured), and the audit's own query must find at least one
export_pdf event of the last ``audit_days`` that carried its data (or does not say
which providers it carried) by a user without an export license. Otherwise the run is
"not corroborated" and nothing is blocked.

This module must never put an unchecked label into SQL or an S3 key, never delete
an object outside ``<user-uuid>/`` of the configured bucket, and never lift the block.

Its parts: rb04_params (params, the checked labels), rb04_registry (steps 1-3 and the
resolve report), rb04_exports (audit and revoke), rb04_users (notify, grant), with
``rights_registry``; the declaration lives here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from remediator import validation
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step
from remediator.runbooks import rights_registry
from remediator.runbooks.rb04_exports import (
    audit_exports,
    render_audit_exports,
    render_revoke_pdfs,
    revoke_pdfs,
)
from remediator.runbooks.rb04_params import Params, provider_of, reported_user, uuid_label
from remediator.runbooks.rb04_registry import (
    KEPT,
    check_reported_user,
    confirm_violation,
    inspect_registry,
    render_check_reported_user,
    render_confirm_violation,
    render_inspect_registry,
    render_report_block,
    render_restrict_exports,
    report_block,
    restrict_exports,
)
from remediator.runbooks.rb04_users import (
    REVOKED_MESSAGE,
    grant_license,
    notify_users,
    render_grant_license,
    render_notify_users,
)


def _target(labels: Mapping[str, str], params: Any) -> str:
    return validation.provider(labels.get("provider"), params.providers)


# rights_registry cannot import Params (rb04_params imports it for its validators):
# the step hands them over, typed.
async def read_registry(*, ctx: StepContext, **_: Any) -> Done | Skip:
    return await rights_registry.read_registry(ctx, ctx.params_as(Params))


def render_read_registry(*, ctx: StepContext, **_: Any) -> str:
    return rights_registry.render_read_registry(ctx, ctx.params_as(Params))


STEPS: Sequence[Step] = (
    Step(
        "inspect_registry",
        "diagnose",
        "Inspect the provider's rights registry row",
        inspect_registry,
        render_inspect_registry,
        stop_on_failure=True,
        timeout=15.0,
    ),
    Step(
        "read_rights_registry",
        "diagnose",
        "Show the provider's entry in the rights registry YAML",
        read_registry,
        render_read_registry,
        timeout=15.0,
    ),
    Step(
        "check_reported_user",
        "diagnose",
        "Check the reported user's licenses",
        check_reported_user,
        render_check_reported_user,
        timeout=15.0,
    ),
    Step(
        "confirm_violation",
        "diagnose",
        "Confirm the violation in the export events",
        confirm_violation,
        render_confirm_violation,
        # Exports are blocked only on a violation that was seen.
        stop_on_failure=True,
        timeout=30.0,
    ),
    Step(
        "restrict_exports",
        "mitigate",
        "Block exports of the provider (kept after resolve: compliance lifts it)",
        restrict_exports,
        render_restrict_exports,
        mutates=True,
        idempotent=True,
        timeout=15.0,
    ),
    Step(
        "audit_exports",
        "diagnose",
        "Audit recent PDF exports against user licenses",
        audit_exports,
        render_audit_exports,
        timeout=30.0,
    ),
    Step(
        "revoke_pdfs",
        "mitigate",
        "Revoke the violating PDFs (S3 delete)",
        revoke_pdfs,
        render_revoke_pdfs,
        mutates=True,
        approval="approve",
        needs=("aws",),
        idempotent=True,
        timeout=120.0,
        attempts=2,
    ),
    Step(
        "notify_users",
        "notify",
        "Notify the users whose exports were revoked",
        notify_users,
        render_notify_users,
        mutates=True,
        approval="approve",
        needs=("aws", "database"),
        idempotent=True,
        timeout=60.0,
    ),
    Step(
        "grant_license",
        "mitigate",
        "Grant the missing license (only if legitimate)",
        grant_license,
        render_grant_license,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "report_block",
        "verify",
        "Exports stay blocked until compliance lifts the block",
        report_block,
        render_report_block,
        timeout=15.0,
    ),
)

RUNBOOK = Runbook(
    id="RB-04",
    title="Rights registry violation",
    severity="P1",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=_target,
    anchor="rb-04-rights-registry-violation",
)

# Tests and callers reach these through the runbook module.
__all__ = [
    "KEPT",
    "RESOLVE_STEPS",
    "REVOKED_MESSAGE",
    "RUNBOOK",
    "STEPS",
    "Params",
    "provider_of",
    "reported_user",
    "uuid_label",
]
