"""The DawsOS tables and columns the runbooks use: required, or used when present.

Required: what the runbooks' own SQL names, all a user's DawsOS database is known to
hold; every runbook does its job on these alone. Optional: used only when the catalog
has them (``TargetDatabase.columns``), e.g. a pack's build status and hash. ``doctor``
and the minimal test fixture read this table; the runbooks' statements are the truth
it summarises.
"""

from __future__ import annotations

from collections.abc import Mapping

REQUIRED: Mapping[str, frozenset[str]] = {
    "pricing_pack": frozenset({"id", "date", "is_fresh", "created_at"}),  # RB-01
    "alerts": frozenset({"id", "name", "condition_json", "active", "cooldown_minutes"}),
    "notifications": frozenset({"id", "user_id", "alert_id", "payload_json", "created_at"}),
    "provider_rights": frozenset({"provider", "export", "require_license"}),  # RB-04
    "user_licenses": frozenset({"user_id", "provider", "license_type", "granted_at"}),
    "analytics_events": frozenset(
        {"user_id", "event_type", "payload_json", "meta_json", "created_at"}
    ),
    "audit_log": frozenset({"user_id", "portfolio_id", "action", "meta_json", "ts"}),  # RB-06
    "users": frozenset({"id", "password_reset_required"}),  # RB-06
}

OPTIONAL: Mapping[str, frozenset[str]] = {
    "pricing_pack": frozenset({"status", "hash"}),  # RB-01: "built" = ready with a hash
    "analytics_events": frozenset({"id"}),  # RB-04: names the event in the audit
}

# Which runbooks read or write each table.
USED_BY: Mapping[str, tuple[str, ...]] = {
    "pricing_pack": ("RB-01",),
    "alerts": ("RB-02", "RB-03"),
    "notifications": ("RB-03", "RB-04", "RB-06"),
    "provider_rights": ("RB-04",),
    "user_licenses": ("RB-04",),
    "analytics_events": ("RB-04", "RB-06"),
    "audit_log": ("RB-06",),
    "users": ("RB-06",),
}
