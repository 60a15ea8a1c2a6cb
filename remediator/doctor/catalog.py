"""What each built-in runbook step needs: tables and columns, Kubernetes verbs, AWS
calls, HTTP peers, the cache and params. Data only; ``doctor`` checks it.

Derived from the SQL and client calls in ``remediator/runbooks/rb0*.py``. Required
columns are those the DawsOS operational runbooks (RB-01..RB-06) name; any other
column a step uses where it exists (a pack's ``status`` or ``hash``) is optional:
absent, it is reported as ``optional_missing`` and the step still runs.

Keep it next to the runbooks in step: a step added to a runbook needs its entry here
(tests/doctor checks that every registered built-in step has one).
"""

from __future__ import annotations

from collections.abc import Mapping

from remediator.doctor.needs import (
    Aws,
    Cache,
    Database,
    Extension,
    Http,
    Index,
    Kube,
    Need,
    Param,
    Role,
    Table,
)

DB = Database()
PROVIDERS = Http("providers")
APP = Http("app")
LIST_PODS = Kube("list", "pods")
POD_LOGS = Kube("get", "pods", "log")
GET_JOBS = Kube("get", "jobs", group="batch")
CREATE_JOBS = Kube("create", "jobs", group="batch")
JOB_STATUS = Kube("get", "jobs", "status", group="batch")
# Build and replay Jobs copy the workload's pod template (DESIGN: never a bare container).
GET_DEPLOYMENTS = Kube("get", "deployments", group="apps")
GET_SCALE = Kube("get", "deployments", "scale", group="apps")
PATCH_SCALE = Kube("patch", "deployments", "scale", group="apps")
PATCH_DEPLOYMENTS = Kube("patch", "deployments", group="apps")
PATCH_SECRETS = Kube("patch", "secrets")
DESCRIBE_RDS = Aws("rds", "DescribeDBInstances", "rds_instance")
GET_IP_SET = Aws("wafv2", "GetIPSet", "waf_ip_set")
HEAD_EXPORT = Aws("s3", "HeadObject", "s3_bucket")
NOTIFY_INDEX = Index("notifications", "uq_notify_user_alert_day")

# The pack columns of RB-01's own SQL, and what it uses when the catalog has it.
PACK_OPTIONAL = ("status", "hash")

CATALOG: Mapping[str, Mapping[str, tuple[Need, ...]]] = {
    "RB-01": {
        "kill_stuck": (DB, Role("pg_signal_backend")),
        "scheduler_logs": (LIST_PODS, POD_LOGS),
        "provider_health": (PROVIDERS,),
        "recent_packs": (
            Table(
                "pricing_pack", read=("id", "date", "is_fresh", "created_at"), optional=("status",)
            ),
        ),
        "long_running_queries": (DB,),
        "serve_last_good": (
            Table(
                "pricing_pack",
                read=("id", "date", "is_fresh"),
                write=("is_fresh",),
                optional=PACK_OPTIONAL,
            ),
        ),
        "rerun_build": (
            Table("pricing_pack", read=("id", "date", "is_fresh"), optional=PACK_OPTIONAL),
            GET_JOBS,
            GET_DEPLOYMENTS,
            CREATE_JOBS,
        ),
        "await_build": (
            Table("pricing_pack", read=("id", "date", "is_fresh"), optional=PACK_OPTIONAL),
            JOB_STATUS,
        ),
        "mark_fresh": (
            Table(
                "pricing_pack",
                read=("id", "date", "is_fresh"),
                write=("is_fresh",),
                optional=PACK_OPTIONAL,
            ),
        ),
        "freshness_gate": (APP,),
    },
    "RB-02": {
        "provider_status": (PROVIDERS,),
        "pause_alerts": (
            Table("alerts", read=("id", "active", "condition_json"), write=("active",)),
        ),
        "check_cache": (Cache(),),
        "replay_dlq": (PROVIDERS, GET_DEPLOYMENTS, CREATE_JOBS),
    },
    "RB-03": {
        "confirm_storm": (Table("notifications", read=("created_at",)),),
        "global_cooldown": (
            Table("alerts", read=("id", "cooldown_minutes"), write=("cooldown_minutes",)),
        ),
        "top_offenders": (
            Table("notifications", read=("alert_id", "created_at")),
            Table("alerts", read=("id", "name", "condition_json", "active")),
        ),
        "disable_offenders": (Table("alerts", read=("id", "active"), write=("active",)),),
        "check_dedupe": (Table("notifications", read=("user_id", "alert_id", "created_at")),),
        "delete_duplicates": (
            Table(
                "notifications",
                read=("id", "user_id", "alert_id", "payload_json", "created_at"),
                delete=True,
            ),
        ),
        "scale_evaluator_down": (GET_SCALE, PATCH_SCALE),
        "review_offenders": (Table("alerts", read=("id", "name", "active")),),
    },
    "RB-04": {
        # The registry YAML is a file or a ConfigMap, whichever the params name.
        "read_rights_registry": (Param("rights_registry_path", ("rights_registry_configmap",)),),
        "inspect_registry": (
            Table("provider_rights", read=("provider", "export", "require_license")),
        ),
        "check_reported_user": (
            Table("user_licenses", read=("user_id", "provider", "license_type", "granted_at")),
        ),
        "confirm_violation": (
            Table(
                "analytics_events",
                read=("user_id", "event_type", "payload_json", "created_at"),
                optional=("id",),
            ),
            Table("user_licenses", read=("user_id", "provider", "license_type")),
        ),
        "restrict_exports": (
            Table(
                "provider_rights",
                read=("provider", "export", "require_license"),
                write=("export", "require_license"),
            ),
        ),
        "audit_exports": (
            Table(
                "analytics_events",
                read=("user_id", "event_type", "payload_json", "created_at"),
                optional=("id",),
            ),
            Table("user_licenses", read=("user_id", "provider", "license_type")),
        ),
        "revoke_pdfs": (
            Table("user_licenses", read=("user_id", "provider", "license_type")),
            HEAD_EXPORT,
            Aws("s3", "DeleteObject"),
        ),
        "notify_users": (
            Table("user_licenses", read=("user_id", "provider", "license_type")),
            Table("notifications", insert=("user_id", "alert_id", "payload_json")),
            NOTIFY_INDEX,
            HEAD_EXPORT,
        ),
        "grant_license": (
            Table("user_licenses", insert=("user_id", "provider", "license_type", "granted_at")),
        ),
        "report_block": (Table("provider_rights", read=("provider", "export", "require_license")),),
    },
    "RB-05": {
        "rds_status": (DESCRIBE_RDS,),
        "failover": (
            DESCRIBE_RDS,
            Aws("rds", "FailoverDBCluster"),
            Aws("rds", "RebootDBInstance"),
        ),
        "top_statements": (DB, Extension("pg_stat_statements")),
        "long_queries": (DB,),
        "blocking_sessions": (DB,),
        "confirm_incident": (DB,),
        "terminate_blockers": (DB, Role("pg_signal_backend")),
        "scale_up": (DESCRIBE_RDS, Aws("rds", "ModifyDBInstance")),
        "point_in_time_restore": (DESCRIBE_RDS, Aws("rds", "RestoreDBInstanceToPointInTime")),
    },
    "RB-06": {
        "confirm_source": (
            Table("audit_log", read=("action", "meta_json", "ts")),
            Table("analytics_events", read=("event_type", "meta_json", "created_at")),
        ),
        "rotate_jwt_secret": (PATCH_SECRETS, PATCH_DEPLOYMENTS),
        "block_source_ip": (Param("waf_ip_set_id"), GET_IP_SET, Aws("wafv2", "UpdateIPSet")),
        "idor_audit": (
            Table("audit_log", read=("user_id", "portfolio_id", "action", "meta_json", "ts")),
        ),
        "rls_gaps": (DB,),
        "logins_from_ip": (
            Table("analytics_events", read=("user_id", "event_type", "meta_json", "created_at")),
        ),
        "force_password_resets": (
            Table(
                "users", read=("id", "password_reset_required"), write=("password_reset_required",)
            ),
        ),
        "notify_users": (
            Table("notifications", insert=("user_id", "alert_id", "payload_json")),
            NOTIFY_INDEX,
        ),
        "list_blocks": (Param("waf_ip_set_id"), GET_IP_SET),
        "waf_sampled_requests": (Param("waf_web_acl_id"), Aws("wafv2", "GetSampledRequests")),
    },
}


def needs_of(runbook: str, step: str) -> tuple[Need, ...] | None:
    """The step's needs, or None when the catalog does not know the step."""
    steps = CATALOG.get(runbook)
    return None if steps is None else steps.get(step)


def tables() -> tuple[str, ...]:
    """Every table any catalogued step touches."""
    found = {
        need.name
        for steps in CATALOG.values()
        for needs in steps.values()
        for need in needs
        if isinstance(need, Table)
    }
    return tuple(sorted(found))
