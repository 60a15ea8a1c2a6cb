-- Seed data for the DawsOS target schema: the state of the database on an incident
-- night, small enough to load per test (~1000 rows).
--
-- Every timestamp is relative to now() (and pack dates to today in America/New_York,
-- the zone of the DawsOS SLO "ready by 00:15 local time": RB-01's default
-- timezone, remediator.testing_dawsos.PACK_TIMEZONE), so the seed means
-- the same thing whenever it is loaded. The whole script runs as one statement batch,
-- so now() is a single instant for all of it.
--
-- Deterministic ids: user N is md5('dawsos:user:N')::uuid and user N's portfolio is
-- md5('dawsos:portfolio:N')::uuid (remediator.testing_dawsos.user_id / portfolio_id).
--
-- What is in it, by runbook:
--   RB-01  five packs over five days; tonight's (today) is still 'building' with
--          partial prices and no FX; only yesterday's pack is fresh. Two new symbols
--          have no FIGI/CUSIP mapping.
--   RB-02  alerts depending on polygon / fmp / fred / news (condition_json->>'provider');
--          one polygon alert, pgn-103, was already disabled by a human.
--   RB-03  cooldowns of 5, 15, 30, 60 and 120 minutes; a storm in the last 3 minutes
--          concentrated on three broadcast alerts abc-123 (120), def-456 (80) and
--          ghi-789 (50); no duplicate (user, alert, day), in any session time zone.
--   RB-04  FMP export wrongly set to 'allow'; export_pdf events in the last 7 days by
--          users with and without an FMP export license (violators: users 11, 13,
--          14, 15, 21, 22) and older ones outside the window.
--   RB-06  logins from 192.0.2.1 (users 3, 7, 11, 42, 99 in the last 7 days, user 120
--          before that); 30 '403_idor' audit rows in the last 24 h (user 42), 5 older;
--          portfolio_metrics has no RLS policy.

-- ------------------------------------------------------------------ users
INSERT INTO users (id, email, password_reset_required, created_at)
SELECT md5('dawsos:user:' || i)::uuid,
       format('user%s@example.com', lpad(i::text, 3, '0')),
       i = 150,  -- one reset already pending from an earlier incident
       now() - make_interval(days => 400 - i)
FROM generate_series(1, 150) AS i;

-- ---------------------------------------------------------- pricing packs
INSERT INTO pricing_pack (id, date, is_fresh, status, hash, created_at)
SELECT 'PP-' || to_char(d, 'YYYY-MM-DD'),
       d,
       k = 1,  -- only yesterday's pack is fresh: tonight's build is stuck
       CASE WHEN k = 0 THEN 'building' ELSE 'ready' END,
       CASE WHEN k = 0 THEN NULL ELSE md5('pack:' || to_char(d, 'YYYY-MM-DD')) END,
       CASE WHEN k = 0 THEN now() - interval '25 minutes'
            ELSE (d + time '00:07') AT TIME ZONE 'America/New_York' END
FROM generate_series(0, 4) AS k,
     LATERAL (SELECT (now() AT TIME ZONE 'America/New_York')::date - k AS d) AS day;

CREATE TEMP TABLE _seed_symbols (rn int, symbol text, base numeric, exchange text);
INSERT INTO _seed_symbols VALUES
    (1, 'AAPL', 229.87, 'XNAS'), (2, 'MSFT', 416.32, 'XNAS'), (3, 'NVDA', 138.00, 'XNAS'),
    (4, 'AMZN', 186.51, 'XNAS'), (5, 'GOOGL', 163.42, 'XNAS'), (6, 'META', 563.33, 'XNAS'),
    (7, 'TSLA', 218.85, 'XNAS'), (8, 'JPM', 222.07, 'XNYS'), (9, 'V', 289.36, 'XNYS'),
    (10, 'KO', 69.74, 'XNYS'), (11, 'PEP', 166.03, 'XNAS'), (12, 'XOM', 119.26, 'XNYS'),
    (13, 'SPY', 584.59, 'ARCX'), (14, 'QQQ', 494.47, 'XNAS'), (15, 'BRK.B', 467.51, 'XNYS'),
    (16, 'UNH', 585.12, 'XNYS'), (17, 'JNJ', 161.04, 'XNYS'), (18, 'PG', 171.45, 'XNYS'),
    (19, 'HD', 410.22, 'XNYS'), (20, 'DIS', 99.87, 'XNYS'),
    -- New listings nobody has mapped yet (RB-01 root cause 3).
    (21, 'RDDT', 120.44, 'XNYS'), (22, 'ARM', 150.13, 'XNAS');

-- Synthetic but well-formed identifiers (real FIGIs/CUSIPs are licensed data).
INSERT INTO symbol_mapping (symbol, figi, cusip, exchange, updated_at)
SELECT symbol,
       CASE WHEN rn <= 20 THEN 'BBG' || upper(substr(md5('figi:' || symbol), 1, 9)) END,
       CASE WHEN rn <= 20 THEN upper(substr(md5('cusip:' || symbol), 1, 9)) END,
       exchange,
       CASE WHEN rn <= 20 THEN now() - interval '90 days' ELSE now() - interval '1 day' END
FROM _seed_symbols;

-- Ready packs have all 20 mapped symbols; tonight's build stopped after 8.
INSERT INTO prices (pack_id, symbol, close, currency, source)
SELECT p.id, s.symbol,
       round(s.base * (1 + ((s.rn * 7 + k * 3) % 11 - 5) / 400.0), 2),
       'USD', 'polygon'
FROM pricing_pack AS p,
     LATERAL (SELECT (now() AT TIME ZONE 'America/New_York')::date - p.date AS k) AS age,
     _seed_symbols AS s
WHERE s.rn <= CASE WHEN p.status = 'building' THEN 8 ELSE 20 END;

-- FX rates exist for ready packs only: tonight's build never reached that step.
INSERT INTO fx_rates (pack_id, base, quote, rate, source)
SELECT p.id, fx.base, fx.quote,
       round(fx.rate * (1 + ((now() AT TIME ZONE 'America/New_York')::date - p.date) % 3 / 500.0), 6),
       'polygon'
FROM pricing_pack AS p,
     (VALUES ('EUR', 'USD', 1.0812), ('GBP', 'USD', 1.2695),
             ('USD', 'JPY', 150.21), ('USD', 'CAD', 1.3604)) AS fx(base, quote, rate)
WHERE p.status = 'ready';

DROP TABLE _seed_symbols;

-- ----------------------------------------------------------------- alerts
INSERT INTO alerts (id, user_id, name, condition_json, active, cooldown_minutes, created_at)
SELECT a.id,
       CASE WHEN a.owner IS NOT NULL THEN md5('dawsos:user:' || a.owner)::uuid END,
       a.name, a.cond::jsonb, a.active, a.cooldown,
       now() - make_interval(days => a.age_days)
FROM (VALUES
    -- The three storm alerts: broadcast, short cooldowns.
    ('abc-123', NULL::int, 'VIX Spike',
     '{"entity": "VIX", "op": ">", "val": 30, "provider": "polygon"}', TRUE, 5, 200),
    ('def-456', NULL, 'Portfolio Loss',
     '{"portfolio_pl": "<", "val": -0.05, "provider": "polygon"}', TRUE, 15, 150),
    -- RB-03's faulty rule: "value > 0" is always true.
    ('ghi-789', NULL, 'Portfolio Value Check',
     '{"type": "portfolio", "metric": "value", "op": ">", "value": 0, "provider": "fmp"}',
     TRUE, 5, 2),
    -- Per-user alerts, one provider each.
    ('pgn-101', 1, 'AAPL above 250',
     '{"type": "price", "entity": "AAPL", "op": ">", "val": 250, "provider": "polygon"}',
     TRUE, 30, 60),
    ('pgn-102', 2, 'MSFT daily drop 5%',
     '{"type": "price_change", "entity": "MSFT", "op": "<", "val": -0.05, "window": "1d", "provider": "polygon"}',
     TRUE, 60, 45),
    -- Disabled by a human last week: RB-02 must never re-enable it.
    ('pgn-103', 3, 'NVDA earnings gap',
     '{"type": "gap", "entity": "NVDA", "op": ">", "val": 0.08, "provider": "polygon"}',
     FALSE, 120, 30),
    ('pgn-104', 4, 'SPY below 200-day average',
     '{"type": "ma_cross", "entity": "SPY", "window": 200, "op": "<", "provider": "polygon"}',
     TRUE, 120, 90),
    ('6f1c2b7e-9d4a-4c1e-8b2f-3a5d7e9f1b24', 14, 'EURUSD below 1.05',
     '{"type": "fx", "entity": "EURUSD", "op": "<", "val": 1.05, "provider": "polygon"}',
     TRUE, 30, 20),
    ('fmp-201', 5, 'AAPL P/E above 40',
     '{"type": "ratio", "entity": "AAPL", "metric": "pe", "op": ">", "val": 40, "provider": "fmp"}',
     TRUE, 60, 80),
    ('fmp-202', 6, 'KO dividend cut',
     '{"type": "dividend", "entity": "KO", "op": "<", "val": 0, "provider": "fmp"}',
     TRUE, 120, 70),
    ('fmp-203', 7, 'TSLA debt/equity above 1',
     '{"type": "ratio", "entity": "TSLA", "metric": "de", "op": ">", "val": 1, "provider": "fmp"}',
     TRUE, 30, 50),
    ('frd-301', 8, '10Y yield above 5%',
     '{"type": "macro", "series_id": "DGS10", "op": ">", "val": 5.0, "provider": "fred"}',
     TRUE, 60, 100),
    ('frd-302', 9, 'Unemployment rising',
     '{"type": "macro", "series_id": "UNRATE", "op": ">", "val": 4.5, "provider": "fred"}',
     TRUE, 120, 100),
    ('frd-303', 10, 'CPI above 4%',
     '{"type": "macro", "series_id": "CPIAUCSL", "op": ">", "val": 0.04, "provider": "fred"}',
     TRUE, 15, 40),
    ('new-401', 11, 'FOMC headline',
     '{"type": "news", "entity": "FOMC", "provider": "news"}', TRUE, 15, 10),
    ('usr-501', 12, 'Drawdown beyond 10%',
     '{"type": "portfolio", "metric": "drawdown", "op": "<", "val": -0.10}', TRUE, 30, 25),
    ('usr-502', 13, 'Position above 25%',
     '{"type": "portfolio", "metric": "concentration", "op": ">", "val": 0.25}', TRUE, 60, 25),
    -- System notices used by RB-04 ("rights violation") and RB-06 ("security incident").
    ('sys-rights-violation', NULL, 'Export revoked notice', '{"type": "system"}', TRUE, 0, 365),
    ('sys-security-incident', NULL, 'Security incident notice', '{"type": "system"}', TRUE, 0, 365)
) AS a(id, owner, name, cond, active, cooldown, age_days);

-- ---------------------------------------------------------- notifications
-- The storm: within 3 minutes of load time, so RB-03's "last 5 minutes" holds it
-- whenever the seed is loaded. One row per (user, alert): a broadcast alert floods
-- through many users, which the per-day unique index does not prevent.
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid, s.alert_id,
       jsonb_build_object('channel', CASE WHEN u % 3 = 0 THEN 'sms' ELSE 'email' END,
                          'message', s.message),
       now() - make_interval(secs => (u * 7) % 180)
FROM (VALUES ('abc-123', 120, 'VIX is above 30'),
             ('def-456', 80, 'Your portfolio is down more than 5% today'),
             ('ghi-789', 50, 'Portfolio value is above 0')) AS s(alert_id, n, message),
     generate_series(1, s.n) AS u;

-- Ordinary traffic in the same window: one notification each.
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT a.user_id, a.id, jsonb_build_object('channel', 'email', 'message', a.name),
       now() - interval '1 minute'
FROM alerts AS a
WHERE a.id IN ('pgn-101', 'fmp-201', 'frd-301');

-- History: per-user alerts fired 2, 4 and 6 days ago. 48 h apart, so no two rows of a
-- (user, alert) pair share a calendar day in any time zone.
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT a.user_id, a.id, jsonb_build_object('channel', 'email', 'message', a.name),
       now() - make_interval(days => d, hours => 3)
FROM alerts AS a, (VALUES (2), (4), (6)) AS ago(d)
WHERE a.user_id IS NOT NULL;

-- The VIX alert also fired two days ago, for 20 subscribers.
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid, 'abc-123',
       jsonb_build_object('channel', 'email', 'message', 'VIX is above 30'),
       now() - make_interval(days => 2, mins => u)
FROM generate_series(1, 20) AS u;

-- ------------------------------------------------------------------ rights
INSERT INTO provider_rights (provider, export, require_license, attribution, updated_at) VALUES
    ('POLYGON', 'restricted', TRUE, 'Market data © Polygon.io', now() - interval '120 days'),
    -- Misconfigured three days ago: this is the violation RB-04 responds to.
    ('FMP', 'allow', FALSE, 'Financial data © Financial Modeling Prep', now() - interval '3 days'),
    ('FRED', 'allow', FALSE, 'Source: FRED, Federal Reserve Bank of St. Louis',
     now() - interval '120 days'),
    ('NEWS', 'restricted', TRUE, 'Headlines © NewsAPI', now() - interval '120 days');

INSERT INTO user_licenses (user_id, provider, license_type, granted_at)
SELECT md5('dawsos:user:' || u)::uuid, l.provider, l.license_type,
       now() - make_interval(days => 30 + u)
FROM (VALUES ('FMP', 'export', 1, 10),      -- users 1-10 may export FMP data
             ('POLYGON', 'view', 1, 5),
             ('FMP', 'view', 21, 25)        -- view only: exporting is still a violation
     ) AS l(provider, license_type, first_user, last_user),
     generate_series(l.first_user, l.last_user) AS u;

-- ------------------------------------------------------- analytics events
-- PDF exports in the last 7 days (every 8 h); every fourth one carries FRED data only.
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT md5('dawsos:user:' || e.u)::uuid, 'export_pdf',
       jsonb_build_object(
           'export_id', format('exp-%s', lpad(e.n::text, 4, '0')),
           'portfolio_id', md5('dawsos:portfolio:' || e.u)::uuid,
           'providers', CASE WHEN e.u % 4 = 0 THEN '["FRED"]'::jsonb
                             ELSE '["FMP", "FRED"]'::jsonb END,
           'pages', 3 + e.u % 5),
       jsonb_build_object('ip_address', format('198.51.100.%s', e.u),
                          'user_agent', 'DawsOS-Web/2.3'),
       now() - make_interval(hours => (e.n * 8)::int)
FROM unnest(ARRAY[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 21, 22])
     WITH ORDINALITY AS e(u, n);

-- Older exports, outside RB-04's 7-day audit window.
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid, 'export_pdf',
       jsonb_build_object('export_id', format('exp-old-%s', u),
                          'portfolio_id', md5('dawsos:portfolio:' || u)::uuid,
                          'providers', '["FMP"]'::jsonb, 'pages', 4),
       jsonb_build_object('ip_address', format('198.51.100.%s', u),
                          'user_agent', 'DawsOS-Web/2.3'),
       now() - make_interval(days => old.days_ago)
FROM (VALUES (30, 8), (32, 10)) AS old(u, days_ago);

-- Ordinary logins over the last 5 days.
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid, 'login', jsonb_build_object('method', 'password'),
       jsonb_build_object('ip_address', format('198.51.100.%s', u),
                          'user_agent', 'DawsOS-Web/2.3'),
       now() - make_interval(hours => u * 3)
FROM generate_series(1, 40) AS u;

-- Logins from the suspicious address: five accounts in the last two hours...
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT md5('dawsos:user:' || s.u)::uuid, 'login', jsonb_build_object('method', 'jwt'),
       jsonb_build_object('ip_address', '192.0.2.1', 'user_agent', 'python-requests/2.31'),
       now() - make_interval(mins => (s.n * 20)::int)
FROM unnest(ARRAY[3, 7, 11, 42, 99]) WITH ORDINALITY AS s(u, n);

-- ...one before the 7-day window, and failed attempts on unknown accounts.
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
VALUES (md5('dawsos:user:120')::uuid, 'login', '{"method": "password"}',
        '{"ip_address": "192.0.2.1", "user_agent": "python-requests/2.31"}',
        now() - interval '9 days');
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT NULL, 'login_failed', jsonb_build_object('email', format('admin%s@example.com', i)),
       jsonb_build_object('ip_address', '192.0.2.1', 'user_agent', 'python-requests/2.31'),
       now() - make_interval(mins => i * 5)
FROM generate_series(1, 10) AS i;

-- The freshness gate turning users away tonight.
INSERT INTO analytics_events (user_id, event_type, payload_json, meta_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid, 'pattern_execute',
       jsonb_build_object('pattern_id', 'portfolio_overview', 'status', 503,
                          'error', 'Pricing pack warming in progress'),
       jsonb_build_object('ip_address', format('198.51.100.%s', u)),
       now() - make_interval(mins => u * 2)
FROM generate_series(1, 10) AS u;

-- -------------------------------------------------------------- audit log
-- User 42 (logged in from 192.0.2.1) probing other users' portfolios.
INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)
SELECT md5('dawsos:user:42')::uuid, md5('dawsos:portfolio:' || i)::uuid, '403_idor',
       jsonb_build_object('ip_address', '192.0.2.1', 'status', 403,
                          'path', '/api/portfolios/' || md5('dawsos:portfolio:' || i)::uuid),
       now() - make_interval(mins => i * 23)
FROM generate_series(1, 30) AS i;

-- Older, unrelated 403s, outside RB-06's 24-hour window.
INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)
SELECT md5('dawsos:user:77')::uuid, md5('dawsos:portfolio:' || (i + 30))::uuid, '403_idor',
       jsonb_build_object('ip_address', '203.0.113.50', 'status', 403,
                          'path', '/api/portfolios/' || md5('dawsos:portfolio:' || (i + 30))::uuid),
       now() - make_interval(days => 2, hours => i)
FROM generate_series(1, 5) AS i;

INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)
SELECT md5('dawsos:user:' || u)::uuid, md5('dawsos:portfolio:' || u)::uuid, 'portfolio_view',
       jsonb_build_object('ip_address', format('198.51.100.%s', u)),
       now() - make_interval(hours => u)
FROM generate_series(1, 20) AS u;

-- Exports that the rights gate blocked before FMP was flipped to 'allow'.
INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)
SELECT md5('dawsos:user:' || u)::uuid, md5('dawsos:portfolio:' || u)::uuid, 'rights_block',
       jsonb_build_object('provider', 'FMP', 'reason', 'no export license'),
       now() - make_interval(days => 4, hours => u)
FROM (VALUES (11), (13)) AS b(u);

-- -------------------------------------------------------------- portfolios
INSERT INTO portfolios (id, user_id, name, base_currency, created_at)
SELECT md5('dawsos:portfolio:' || i)::uuid, md5('dawsos:user:' || i)::uuid,
       format('Portfolio %s', i), CASE WHEN i % 10 = 0 THEN 'EUR' ELSE 'USD' END,
       now() - make_interval(days => 300 - i)
FROM generate_series(1, 40) AS i;

INSERT INTO portfolio_positions (portfolio_id, symbol, quantity, cost_basis)
SELECT md5('dawsos:portfolio:' || i)::uuid, s.symbol, 10 + i * j, round(100 + (i * 13 + j * 29) % 400, 2)
FROM generate_series(1, 40) AS i,
     generate_series(0, 2) AS j,
     LATERAL (SELECT (ARRAY['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'JPM',
                            'V', 'KO', 'PEP', 'XOM', 'SPY', 'QQQ', 'BRK.B', 'UNH', 'JNJ',
                            'PG', 'HD', 'DIS'])[(i + j * 7) % 20 + 1] AS symbol) AS s;

INSERT INTO portfolio_metrics (portfolio_id, asof_date, pack_id, twr, value, volatility)
SELECT md5('dawsos:portfolio:' || i)::uuid, p.date, p.id,
       ((i * 37) % 21 - 10) / 100.0,
       10000 + i * 2500,
       0.10 + (i % 7) / 100.0
FROM generate_series(1, 40) AS i,
     pricing_pack AS p
WHERE p.is_fresh;
