-- A small DawsOS night to try remediator on: load after schema.sql.
--
-- Pack dates are relative to today in America/New_York (the zone of the DawsOS SLO
-- "ready by 00:15 local time", RB-01's default `timezone`: the pack RB-01 looks for
-- is that day's), other times to now(), so the seed means the same whenever it is
-- loaded. What it holds:
--
--   RB-01  packs for the last four nights and none for today: tonight's build never
--          wrote its pack. No pack is fresh, so /execute answers 503 "pricing pack
--          warming" (as in RB-01 step 4, which has to mark yesterday's pack fresh
--          again). A PricingPackNotReady alert finds today's pack late and serves
--          yesterday's.
--   RB-02  alerts that depend on polygon, fmp and fred (condition_json->>'provider').
--   RB-03  alerts with cooldowns of 0 to 120 minutes and a quiet notification history
--          (two to four days old). storm.sql adds the storm of the README's first
--          mitigation.
--   RB-04  FMP exports restricted; two users hold an FMP export license.
--   RB-06  a week of ordinary logins; no 403_idor rows.
--
-- User N's id is md5('dawsos:user:N')::uuid.

INSERT INTO users (id, password_reset_required)
SELECT md5('dawsos:user:' || i)::uuid, FALSE
FROM generate_series(1, 150) AS i;

-- ------------------------------------------------------------------ RB-01
INSERT INTO pricing_pack (id, date, is_fresh, created_at)
SELECT 'PP-' || to_char(d, 'YYYY-MM-DD'), d, FALSE,
       (d + time '00:07') AT TIME ZONE 'America/New_York'
FROM generate_series(1, 4) AS k,
     LATERAL (SELECT (now() AT TIME ZONE 'America/New_York')::date - k AS d) AS day;

-- ------------------------------------------------------------ RB-02, RB-03
INSERT INTO alerts (id, name, condition_json, active, cooldown_minutes) VALUES
    ('abc-123', 'VIX Spike', '{"entity": "VIX", "op": ">", "val": 30}', TRUE, 5),
    ('def-456', 'Portfolio Loss', '{"portfolio_pl": "<", "val": -0.05}', TRUE, 15),
    -- The faulty rule of RB-03 step 6: "value > 0" is true for every portfolio.
    ('ghi-789', 'Portfolio value', '{"type": "portfolio", "metric": "value", "op": ">", "value": 0}', TRUE, 30),
    ('pgn-101', 'AAPL above 250', '{"provider": "polygon", "entity": "AAPL", "op": ">", "val": 250}', TRUE, 15),
    ('pgn-102', 'NVDA moves 5% in a day', '{"provider": "polygon", "entity": "NVDA", "metric": "day_change", "op": ">", "val": 0.05}', TRUE, 60),
    ('fmp-201', 'MSFT P/E above 40', '{"provider": "fmp", "entity": "MSFT", "metric": "pe", "op": ">", "val": 40}', TRUE, 120),
    ('frd-301', '10-year yield above 5%', '{"provider": "fred", "entity": "DGS10", "op": ">", "val": 5}', TRUE, 60),
    -- What RB-04 and RB-06 notify users with; rules/dawsos.yaml exempts both from
    -- RB-03's brake, so they reach users during a storm too.
    ('sys-rights-violation', 'Export revoked (licensing)', '{"type": "system"}', TRUE, 0),
    ('sys-security-incident', 'Security incident: reset your password', '{"type": "system"}', TRUE, 0);

-- A quiet history: a few notifications a day, two to four days ago.
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid,
       a.id,
       jsonb_build_object('message', a.name),
       now() - make_interval(days => d, mins => u * 7)
FROM generate_series(2, 4) AS d,
     (VALUES ('abc-123', 'VIX Spike', 1), ('def-456', 'Portfolio Loss', 2),
             ('pgn-101', 'AAPL above 250', 3), ('frd-301', '10-year yield above 5%', 4))
         AS a(id, name, k),
     generate_series(1, 150) AS u
WHERE (u + d + a.k) % 25 = 0;

-- ------------------------------------------------------------------ RB-04
INSERT INTO provider_rights (provider, export, require_license) VALUES
    ('FMP', 'restricted', TRUE),
    ('POLYGON', 'restricted', TRUE),
    ('FRED', 'allow', FALSE);

INSERT INTO user_licenses (user_id, provider, license_type, granted_at)
SELECT md5('dawsos:user:' || u)::uuid, 'FMP', t, now() - interval '90 days'
FROM (VALUES (4), (9)) AS x(u), (VALUES ('view'), ('export')) AS y(t);

INSERT INTO analytics_events (user_id, event_type, payload_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid,
       'export_pdf',
       jsonb_build_object(
           'export_id', 'exp-' || u || '-' || d,
           'key', md5('dawsos:user:' || u)::uuid || '/exp-' || u || '-' || d || '.pdf',
           'providers', jsonb_build_array('FMP')),
       now() - make_interval(days => d, hours => u)
FROM (VALUES (4), (9)) AS x(u), generate_series(1, 3) AS d;

-- ------------------------------------------------------------------ RB-06
INSERT INTO analytics_events (user_id, event_type, meta_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid,
       'login',
       jsonb_build_object('ip_address', '198.51.100.' || (u % 200 + 1)),
       now() - make_interval(days => d, mins => u * 3)
FROM generate_series(1, 150) AS u, generate_series(0, 6) AS d
WHERE (u + d) % 4 = 0;

INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)
SELECT md5('dawsos:user:' || u)::uuid,
       md5('dawsos:portfolio:' || u)::uuid,
       'portfolio_view',
       jsonb_build_object('ip_address', '198.51.100.' || (u % 200 + 1)),
       now() - make_interval(hours => u)
FROM generate_series(1, 40) AS u;
