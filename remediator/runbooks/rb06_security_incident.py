"""RB-06 Security incident, as declared steps (P0: paged before anything else).

Runbook order, automated:

    - confirm the source address                      diagnose; corroborates the alert's
                                                      source_ip (below)
    1 rotate the JWT secret, restart the API          approve (every user logs in again)
    4 block the source IP in the WAF IP set           mitigate, auto (moved ahead of the
                                                      diagnosis: containment must not wait
                                                      on a slow database)
    2 the WAF's sampled requests from the IP          diagnose
    3 '403_idor' audit rows of the last 24 h          diagnose
    3 portfolio tables without RLS policies           diagnose
    5 recent logins from the source IP                diagnose
    5 force password resets for those users           approve
    6 notify those users                              approve
    on resolve: blocks are kept and listed for review; nothing is undone.

Step 2 reads the WAF's sampled requests from the source address (``waf_samples``)
when the rule names the web ACL (``waf_web_acl_name``, ``waf_web_acl_id``).

Guards on blocking: the ``source_ip`` label must pass ``validation.public_ip``: never a
private, loopback, link-local, multicast or reserved range, never anything overlapping
``allow_list``, never broader than ``/max_prefix_v4`` (``/max_prefix_v6``). A run
blocks at most that one network, so the rule's ``max_targets`` (distinct networks per
window, across replicas) and ``max_runs_per_hour`` bound the blocks per hour; the
rule's cooldown keeps one address from being re-handled; and ``max_ip_set_size``
refuses to grow an IP set nobody has reviewed.

A payload is a claim. Before anything else the run looks for the address in the
DawsOS database, in the tables the runbook's own SQL reads: ``403_idor`` rows of
``audit_log`` and login rows of ``analytics_events`` (``meta_json->>'ip_address'``) of
the last ``evidence_hours``. Fewer than ``min_evidence`` of them and the run is "not
corroborated": nothing is blocked or offered for approval. An address that leaves no
trace there (a scraper that never logs in) is left to a human. In live mode, blocking
is also refused while ``allow_list`` is empty (that step fails, and the page says to
block by hand): without it, nothing stops a block of our own offices or partners.

This module must never log, record or page the new JWT secret (it exists only in the
step's local variable and the patch request), never block an address the label did not
name, and never unblock anything.

Its parts: rb06_params (params, the source network), rb06_block (confirm, block, list
the blocks), rb06_audit (step 3), rb06_accounts (steps 5-6), with ``jwt_rotation`` and
``waf_samples``; the declaration lives here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from remediator import validation
from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks.jwt_rotation import rotate_jwt_secret
from remediator.runbooks.rb06_accounts import (
    RESET_MESSAGE,
    force_password_resets,
    logins_from_ip,
    notify_users,
)
from remediator.runbooks.rb06_audit import idor_audit, rls_gaps
from remediator.runbooks.rb06_block import block_source_ip, confirm_source, list_blocks
from remediator.runbooks.rb06_params import Params, rule_warnings, source_network
from remediator.runbooks.waf_samples import waf_sampled_requests


def _target(labels: Mapping[str, str], params: BaseModel) -> str:
    value = labels.get("source_ip")
    if value is None:
        return labels.get("alertname", "")
    if not isinstance(params, Params):  # the engine validated them with Params
        raise TypeError(f"RB-06: params are {type(params).__name__}, not Params")
    p = params
    return str(
        validation.public_ip(
            value,
            allow_list=p.allow_list,
            max_prefix_v4=p.max_prefix_v4,
            max_prefix_v6=p.max_prefix_v6,
        )
    )


STEPS: Sequence[Step] = (
    confirm_source,
    rotate_jwt_secret,
    block_source_ip,
    waf_sampled_requests,
    idor_audit,
    rls_gaps,
    logins_from_ip,
    force_password_resets,
    notify_users,
)
RESOLVE_STEPS: Sequence[Step] = (list_blocks,)

RUNBOOK = Runbook(
    id="RB-06",
    title="Security incident",
    severity="P0",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=_target,
    page_first=True,
    anchor="rb-06-security-incident",
    warnings=rule_warnings,
)

# Tests and callers reach these through the runbook module.
__all__ = [
    "RESET_MESSAGE",
    "RESOLVE_STEPS",
    "RUNBOOK",
    "STEPS",
    "Params",
    "rule_warnings",
    "source_network",
]
