-- The incident of the README's first live mitigation (RB-03 Alert storm).
--
-- Load it after seed.sql, just before the AlertStorm alert is sent: the storm is in
-- the last 2.5 minutes, and RB-03 acts only on a storm it can see in the
-- notifications table (at least 200 in its 5-minute window). Loaded twice on one
-- UTC day it fails on uq_notify_user_alert_day: one notification per user, alert, day.
--
--   abc-123  VIX Spike          150 users   above RB-03's 50: disabled
--   ghi-789  Portfolio value     90 users   the faulty "value > 0" rule: disabled
--   def-456  Portfolio Loss      40 users   below 50: left on, its cooldown raised
INSERT INTO notifications (user_id, alert_id, payload_json, created_at)
SELECT md5('dawsos:user:' || u)::uuid,
       a.id,
       jsonb_build_object('message', a.name),
       now() - make_interval(secs => (u * 7 + a.k * 13) % 150)
FROM (VALUES ('abc-123', 'VIX Spike', 1, 150),
             ('ghi-789', 'Portfolio value', 2, 90),
             ('def-456', 'Portfolio Loss', 3, 40)) AS a(id, name, k, users),
     generate_series(1, 150) AS u
WHERE u <= a.users;
