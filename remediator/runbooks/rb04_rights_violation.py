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

from pydantic import BaseModel

from remediator import validation
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks.rb04_exports import audit_exports, revoke_pdfs
from remediator.runbooks.rb04_params import Params, provider_of, reported_user, uuid_label
from remediator.runbooks.rb04_registry import (
    KEPT,
    check_reported_user,
    confirm_violation,
    inspect_registry,
    report_block,
    restrict_exports,
)
from remediator.runbooks.rb04_users import REVOKED_MESSAGE, grant_license, notify_users
from remediator.runbooks.rights_registry import ReadRegistry


def _target(labels: Mapping[str, str], params: BaseModel) -> str:
    if not isinstance(params, Params):  # the engine validated them with Params
        raise TypeError(f"RB-04: params are {type(params).__name__}, not Params")
    return validation.provider(labels.get("provider"), params.providers)


# rights_registry cannot import Params (rb04_params imports it for its validators):
# the step hands over what it reads of them.
@step(
    "read_rights_registry",
    "diagnose",
    "Show the provider's entry in the rights registry YAML",
    mutates=False,
    timeout=15.0,
)
def read_rights_registry(ctx: StepContext[Params]) -> ReadRegistry:
    p = ctx.params
    return ReadRegistry(provider_of(ctx), p.rights_registry_path, p.rights_registry_configmap)


STEPS: Sequence[Step] = (
    inspect_registry,
    read_rights_registry,
    check_reported_user,
    confirm_violation,
    restrict_exports,
    audit_exports,
    revoke_pdfs,
    notify_users,
    grant_license,
)
RESOLVE_STEPS: Sequence[Step] = (report_block,)

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
