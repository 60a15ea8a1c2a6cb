-- DawsOS application schema, derived from every query in the DawsOS operational
-- runbooks (RB-01 .. RB-06). It is the *target* the runbooks act on, shipped so that
-- tests (ours and users') run the runbooks' SQL against a real PostgreSQL.
--
-- Only what the runbooks read or write is modelled, plus the keys and indexes a real
-- application would have. Tables live in schema "public" because RB-06's RLS query
-- filters on schemaname = 'public'.

-- ---------------------------------------------------------------- users (RB-06)
CREATE TABLE users (
    id                      uuid PRIMARY KEY,
    email                   text NOT NULL UNIQUE,
    password_reset_required boolean NOT NULL DEFAULT FALSE,
    created_at              timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------ pricing packs (RB-01, RB-05)
CREATE TABLE pricing_pack (
    id         text PRIMARY KEY CHECK (id ~ '^PP-[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    date       date NOT NULL UNIQUE,
    is_fresh   boolean NOT NULL DEFAULT FALSE,
    status     text NOT NULL DEFAULT 'building'
               CHECK (status IN ('building', 'ready', 'failed')),
    hash       text,  -- set by build_pack's last step ("hash computed")
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The id is derived from the date; runbooks address packs by either.
    CONSTRAINT pricing_pack_id_matches_date CHECK (id = 'PP-' || to_char(date, 'YYYY-MM-DD'))
);

CREATE TABLE symbol_mapping (
    symbol     text PRIMARY KEY,
    -- NULL figi/cusip = a new symbol nobody mapped yet (RB-01 root cause 3).
    figi       text UNIQUE CHECK (figi ~ '^BBG[0-9A-Z]{9}$'),
    cusip      text UNIQUE CHECK (cusip ~ '^[0-9A-Z]{9}$'),
    exchange   text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prices (
    pack_id  text NOT NULL REFERENCES pricing_pack (id) ON DELETE CASCADE,
    symbol   text NOT NULL,
    close    numeric(18, 6) NOT NULL CHECK (close > 0),
    currency char(3) NOT NULL DEFAULT 'USD',
    source   text NOT NULL,
    PRIMARY KEY (pack_id, symbol)
);

CREATE TABLE fx_rates (
    pack_id text NOT NULL REFERENCES pricing_pack (id) ON DELETE CASCADE,
    base    char(3) NOT NULL,
    quote   char(3) NOT NULL,
    rate    numeric(18, 8) NOT NULL CHECK (rate > 0),
    source  text NOT NULL,
    PRIMARY KEY (pack_id, base, quote)
);

-- ------------------------------------------------- alerts (RB-02, RB-03)
CREATE TABLE alerts (
    -- Short slugs ('abc-123') or UUID strings: both exist in production.
    id               text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    -- NULL owner = a broadcast alert (market-wide, system notices) that notifies
    -- every subscriber; that is how one alert can flood hundreds of users.
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    name             text NOT NULL,
    condition_json   jsonb NOT NULL,
    active           boolean NOT NULL DEFAULT TRUE,
    cooldown_minutes integer NOT NULL DEFAULT 15 CHECK (cooldown_minutes >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_provider_idx ON alerts ((condition_json ->> 'provider'));

CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alert_id     text NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    payload_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- At most one notification per user, alert and UTC day (RB-03 "dedupe").
-- date_trunc() on a timestamptz depends on the session TimeZone and is therefore not
-- immutable; "AT TIME ZONE 'UTC'" first turns it into a plain timestamp, which is.
-- Writers can rely on it with
--   ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC'))
CREATE UNIQUE INDEX uq_notify_user_alert_day
    ON notifications (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC'));
CREATE INDEX notifications_created_at_idx ON notifications (created_at);

-- ------------------------------------------------------ rights (RB-04)
CREATE TABLE provider_rights (
    provider        text PRIMARY KEY,  -- registry names: 'FMP', 'POLYGON', ...
    export          text NOT NULL CHECK (export IN ('allow', 'restricted')),
    require_license boolean NOT NULL DEFAULT TRUE,
    attribution     text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_licenses (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     text NOT NULL REFERENCES provider_rights (provider),
    license_type text NOT NULL CHECK (license_type IN ('view', 'export', 'redistribute')),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider, license_type)
);

-- ------------------------------------------------ events (RB-04, RB-06)
CREATE TABLE analytics_events (
    id           bigserial PRIMARY KEY,
    -- Nullable: failed logins for unknown accounts are recorded too.
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    event_type   text NOT NULL,
    payload_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    meta_json    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analytics_events_type_time_idx ON analytics_events (event_type, created_at DESC);
CREATE INDEX analytics_events_login_ip_idx
    ON analytics_events ((meta_json ->> 'ip_address')) WHERE event_type = 'login';

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    -- No foreign keys: audit rows must outlive the users and portfolios they name.
    user_id      uuid,
    portfolio_id uuid,
    action       text NOT NULL,
    meta_json    jsonb NOT NULL DEFAULT '{}'::jsonb,
    ts           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_action_ts_idx ON audit_log (action, ts DESC);

-- ------------------------------------------- portfolios (RB-05, RB-06)
CREATE TABLE portfolios (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    base_currency char(3) NOT NULL DEFAULT 'USD',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE portfolio_positions (
    portfolio_id uuid NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    symbol       text NOT NULL,
    quantity     numeric(20, 6) NOT NULL,
    cost_basis   numeric(18, 6) NOT NULL,
    PRIMARY KEY (portfolio_id, symbol)
);

CREATE TABLE portfolio_metrics (
    portfolio_id uuid NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    asof_date    date NOT NULL,
    pack_id      text REFERENCES pricing_pack (id),
    twr          numeric(12, 6),  -- RB-05's example slow query filters on it, unindexed
    value        numeric(20, 2),
    volatility   numeric(12, 6),
    PRIMARY KEY (portfolio_id, asof_date)
);

-- Row-level security: the application sets app.user_id per request.
ALTER TABLE portfolios ENABLE ROW LEVEL SECURITY;
CREATE POLICY portfolios_owner ON portfolios
    USING (user_id = nullif(current_setting('app.user_id', TRUE), '')::uuid);

ALTER TABLE portfolio_positions ENABLE ROW LEVEL SECURITY;
CREATE POLICY portfolio_positions_owner ON portfolio_positions
    USING (portfolio_id IN (
        SELECT id FROM portfolios
        WHERE user_id = nullif(current_setting('app.user_id', TRUE), '')::uuid));

-- portfolio_metrics deliberately has neither RLS nor a policy: it is the gap that
-- RB-06 step 3 ("portfolio-scoped tables without policies") must find.
