-- A DawsOS database with only what the runbooks' own SQL names (RB-01 .. RB-06).
--
-- Every column here is one a runbook statement reads or writes; nothing else. A real
-- DawsOS database has more (a pack's build status or hash, say), and remediator uses
-- such columns when they are there, but it must do its job on these alone. Which
-- statement needs which column: docs/dawsos-schema.md. Keys, defaults, checks and the
-- unique index are what the runbooks' values and checks imply.
--
--   createdb dawsos && psql -d dawsos -f deploy/dawsos/schema.sql -f deploy/dawsos/seed.sql

-- RB-06 steps 5, 6
CREATE TABLE users (
    id                      uuid PRIMARY KEY,
    password_reset_required boolean NOT NULL DEFAULT FALSE
);

-- RB-01 steps 3, 4, 6: one pack a night, 'PP-' and its date
CREATE TABLE pricing_pack (
    id         text PRIMARY KEY CHECK (id ~ '^PP-[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    date       date NOT NULL UNIQUE,
    is_fresh   boolean NOT NULL DEFAULT FALSE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- RB-02 steps 3, 7; RB-03 steps 1, 2, 3, 6
CREATE TABLE alerts (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    condition_json   jsonb NOT NULL,
    active           boolean NOT NULL DEFAULT TRUE,
    cooldown_minutes integer NOT NULL DEFAULT 15 CHECK (cooldown_minutes >= 0)
);

-- RB-03 steps 2, 4; RB-04 step 5; RB-06 step 6
CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alert_id     text NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    payload_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- RB-03 step 4: "Should show: uq_notify_user_alert_day UNIQUE". One notification per
-- user, alert and day; the day is taken in UTC so that the index is immutable.
CREATE UNIQUE INDEX uq_notify_user_alert_day
    ON notifications (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC'));

-- RB-04 step 3
CREATE TABLE provider_rights (
    provider        text PRIMARY KEY,
    export          text NOT NULL CHECK (export IN ('allow', 'restricted')),
    require_license boolean NOT NULL DEFAULT TRUE
);

-- RB-04 steps 2, 6
CREATE TABLE user_licenses (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     text NOT NULL REFERENCES provider_rights (provider),
    license_type text NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider, license_type)
);

-- RB-04 step 4 (export_pdf), RB-06 step 5 (login)
CREATE TABLE analytics_events (
    user_id      uuid,
    event_type   text NOT NULL,
    payload_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    meta_json    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- RB-06 step 3
CREATE TABLE audit_log (
    user_id      uuid,
    portfolio_id uuid,
    action       text NOT NULL,
    meta_json    jsonb NOT NULL DEFAULT '{}'::jsonb,
    ts           timestamptz NOT NULL DEFAULT now()
);

-- RB-05 step 6 counts its rows; RB-06 step 3 wants a row-level security policy on it.
-- The runbooks name no column of it.
CREATE TABLE portfolios ();
ALTER TABLE portfolios ENABLE ROW LEVEL SECURITY;
CREATE POLICY portfolios_none ON portfolios USING (FALSE);
