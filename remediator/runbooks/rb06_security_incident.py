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
from typing import Any

from remediator import validation
from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks import jwt_rotation, waf_samples
from remediator.runbooks.rb06_accounts import (
    RESET_MESSAGE,
    force_password_resets,
    logins_from_ip,
    notify_users,
    render_force_password_resets,
    render_logins_from_ip,
    render_notify_users,
)
from remediator.runbooks.rb06_audit import idor_audit, render_idor_audit, render_rls_gaps, rls_gaps
from remediator.runbooks.rb06_block import (
    block_source_ip,
    confirm_source,
    list_blocks,
    render_block_source_ip,
    render_confirm_source,
    render_list_blocks,
)
from remediator.runbooks.rb06_params import Params, rule_warnings, source_network


def _target(labels: Mapping[str, str], params: Any) -> str:
    value = labels.get("source_ip")
    if value is None:
        return labels.get("alertname", "")
    return str(
        validation.public_ip(
            value,
            allow_list=params.allow_list,
            max_prefix_v4=params.max_prefix_v4,
            max_prefix_v6=params.max_prefix_v6,
        )
    )


STEPS: Sequence[Step] = (
    Step(
        "confirm_source",
        "diagnose",
        "Confirm the source address in the audit log and logins",
        confirm_source,
        render_confirm_source,
        timeout=15.0,
    ),
    Step(
        "rotate_jwt_secret",
        "mitigate",
        "Rotate the JWT secret and restart the API",
        jwt_rotation.rotate_jwt_secret,
        jwt_rotation.render_rotate_jwt_secret,
        mutates=True,
        approval="approve",
        needs=("kubernetes",),
        timeout=60.0,
    ),
    Step(
        "block_source_ip",
        "mitigate",
        "Block the source IP in the WAF IP set",
        block_source_ip,
        render_block_source_ip,
        mutates=True,
        idempotent=True,
        timeout=30.0,
    ),
    Step(
        "waf_sampled_requests",
        "diagnose",
        "Read the WAF's sampled requests from the source address",
        waf_samples.sampled_requests,
        waf_samples.render_sampled_requests,
        timeout=30.0,
        attempts=1,
    ),
    Step(
        "idor_audit",
        "diagnose",
        "403_idor audit rows (RLS bypass attempts)",
        idor_audit,
        render_idor_audit,
        timeout=15.0,
    ),
    Step(
        "rls_gaps",
        "diagnose",
        "Portfolio tables without RLS policies",
        rls_gaps,
        render_rls_gaps,
        timeout=15.0,
    ),
    Step(
        "logins_from_ip",
        "diagnose",
        "Recent logins from the source IP",
        logins_from_ip,
        render_logins_from_ip,
        timeout=15.0,
    ),
    Step(
        "force_password_resets",
        "mitigate",
        "Force password resets for those accounts",
        force_password_resets,
        render_force_password_resets,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
    Step(
        "notify_users",
        "notify",
        "Notify the affected users",
        notify_users,
        render_notify_users,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "list_blocks",
        "verify",
        "Blocks are kept: list them for review",
        list_blocks,
        render_list_blocks,
        timeout=20.0,
    ),
)

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
