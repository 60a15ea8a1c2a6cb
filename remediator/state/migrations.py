"""Versioned schema migrations, shared by both backends.

The SQL is written once with three placeholders the dialect fills in:
``{pk}`` (an auto-increment integer primary key), ``{float}`` and ``{text}``.
Times are unix seconds as floats and JSON is stored as text, so both backends
read back the same Python values. A migration is applied at most once
(``schema_migrations``); on Postgres, under an advisory lock, so several replicas
starting together do not race.

The schema holds the whole engine, not only the journal:
occurrences (the journal) -> runs -> steps (the audit trail) -> approvals,
plus circuits, locks, flags (the kill switch) and the page outbox (whose
``incident`` column says what each page is to its pager's incidents, see
``folds.py``).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
CREATE TABLE occurrences (
    id {pk},
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    alertname TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    group_key TEXT NOT NULL,
    received_at {float} NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    claimed_by TEXT,
    claim_until {float},
    attempts INTEGER NOT NULL DEFAULT 0,
    processed_at {float},
    error TEXT,
    CONSTRAINT occurrences_key UNIQUE (fingerprint, starts_at, status)
);
CREATE INDEX occurrences_pending ON occurrences (state, id);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    runbook TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    target TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    blocked_by TEXT,
    detail TEXT,
    alert TEXT NOT NULL,
    params TEXT NOT NULL,
    severity TEXT NOT NULL,
    received_at {float} NOT NULL,
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL,
    finished_at {float},
    owner TEXT,
    lease_until {float},
    mitigated_at {float},
    undo_state TEXT,
    resolved_at {float},
    CONSTRAINT runs_key UNIQUE (rule, fingerprint, starts_at)
);
CREATE INDEX runs_by_target ON runs (rule, target, created_at);
CREATE INDEX runs_by_state ON runs (state, lease_until);
CREATE INDEX runs_by_alert ON runs (fingerprint, starts_at);

CREATE TABLE steps (
    id {pk},
    run_id TEXT NOT NULL REFERENCES runs (id),
    phase TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    mutates INTEGER NOT NULL,
    approval TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    rendered TEXT NOT NULL,
    result TEXT,
    changes TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at {float} NOT NULL,
    finished_at {float},
    CONSTRAINT steps_key UNIQUE (run_id, phase, name)
);
CREATE INDEX steps_by_time ON steps (started_at);

CREATE TABLE approvals (
    id {pk},
    run_id TEXT NOT NULL REFERENCES runs (id),
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at {float} NOT NULL,
    expires_at {float} NOT NULL,
    decided_by TEXT,
    decided_at {float},
    CONSTRAINT approvals_key UNIQUE (run_id, step)
);
CREATE INDEX approvals_by_state ON approvals (state, expires_at);

CREATE TABLE circuits (
    runbook TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    failures INTEGER NOT NULL,
    opened_at {float},
    updated_at {float} NOT NULL
);

CREATE TABLE locks (
    target TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at {float} NOT NULL
);

CREATE TABLE flags (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at {float} NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE outbox (
    id {pk},
    idem TEXT NOT NULL,
    pager TEXT NOT NULL,
    action TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {float} NOT NULL,
    claimed_by TEXT,
    claim_until {float},
    last_error TEXT,
    created_at {float} NOT NULL,
    sent_at {float},
    CONSTRAINT outbox_idem UNIQUE (idem)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
""",
    ),
    (
        2,
        "runs escalate after a threshold",
        """
ALTER TABLE runs ADD COLUMN escalated_at {float}
""",
    ),
    (
        3,
        "durability barrier",
        """
CREATE TABLE sync_marks (owner TEXT PRIMARY KEY, n INTEGER NOT NULL)
""",
    ),
    (
        4,
        "durable commits replace the durability marks",
        """
DROP TABLE sync_marks
""",
    ),
    (
        5,
        "the mutation gate: parked runs, undo reasons, the kill switch row",
        """
ALTER TABLE runs ADD COLUMN retry_at {float};
ALTER TABLE runs ADD COLUMN undo_reason TEXT;
INSERT INTO flags (name, value, updated_at, updated_by) VALUES ('paused', '0', 0, 'migration')
    ON CONFLICT (name) DO NOTHING;
CREATE INDEX steps_mutations ON steps (phase, mutates, started_at)
""",
    ),
    (
        6,
        "retention finds finished runs by age, and the runs not finished",
        """
CREATE INDEX runs_finished ON runs (state, finished_at);
CREATE INDEX runs_live ON runs (id) WHERE state <> 'done'
""",
    ),
    (
        7,
        "page folding: what each outbox row is to its pager's incidents",
        """
ALTER TABLE outbox ADD COLUMN incident TEXT;
ALTER TABLE outbox ADD COLUMN folded_into TEXT;
ALTER TABLE outbox ADD COLUMN topic TEXT;
UPDATE outbox SET incident = 'new'
    WHERE id IN (SELECT MIN(id) FROM outbox WHERE action = 'trigger' GROUP BY pager, dedup_key);
CREATE INDEX outbox_by_key ON outbox (pager, dedup_key, id);
CREATE INDEX outbox_incidents ON outbox (incident, pager, created_at);
CREATE INDEX outbox_folds ON outbox (folded_into, incident)
""",
    ),
    (
        8,
        "the P0 lane claims pending occurrences by alert name",
        """
CREATE INDEX occurrences_pending_by_name ON occurrences (alertname, id) WHERE state = 'pending'
""",
    ),
    (
        9,
        "verification polls: when a run's mitigation is next checked against Prometheus",
        """
ALTER TABLE runs ADD COLUMN verify_at {float};
CREATE INDEX runs_verify_due ON runs (verify_at) WHERE verify_at IS NOT NULL
""",
    ),
    (
        10,
        "Slack approvals: a single-use nonce per approval, and the posted message per page",
        """
ALTER TABLE approvals ADD COLUMN slack_nonce TEXT;
ALTER TABLE approvals ADD COLUMN slack_nonce_used_at {float};
CREATE TABLE slack_messages (
    dedup_key TEXT PRIMARY KEY,
    run_id TEXT,
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    posted_at {float} NOT NULL
);
CREATE INDEX slack_messages_run ON slack_messages (run_id)
""",
    ),
    (
        12,
        "occurrences say who evaluated the alert (Grafana Alerting or Alertmanager)",
        """
ALTER TABLE occurrences ADD COLUMN source TEXT NOT NULL DEFAULT 'alertmanager';
ALTER TABLE occurrences ADD COLUMN grafana TEXT
""",
    ),
]

DIALECTS = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "text": "TEXT"},
    "postgres": {"pk": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "text": "TEXT"},
}


def render(sql: str, dialect: str) -> list[str]:
    """The migration's statements, one per item, for the given dialect."""
    text = sql.format(**DIALECTS[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]
