-- The DawsOS fixture reduced to what the runbooks' own SQL names (RB-01 .. RB-06).
-- Applied after dawsos_schema.sql and the seed: a user's real DawsOS database is only
-- known to hold these tables and columns, and each runbook must still do its job on
-- them. What is dropped here is what the project's fixture adds beyond the runbooks:
--
--   pricing_pack.status, .hash     a build's state and content hash (RB-01 uses them
--                                  when the catalog has them)
--   prices, fx_rates, symbol_mapping   named in the runbooks' prose, never in their SQL
--   users.email, .created_at; alerts.user_id, .created_at;
--   provider_rights.attribution, .updated_at (the attribution is the registry YAML's);
--   analytics_events.id; audit_log.id; portfolio_metrics.pack_id
--
-- Kept, although no runbook statement lists them, because the runbooks rely on them:
-- the unique index uq_notify_user_alert_day (RB-03 step 4 checks for it by name) and
-- the portfolio tables' row-level security (RB-06 step 3 reads pg_policies).
DROP TABLE prices, fx_rates, symbol_mapping;
ALTER TABLE portfolio_metrics DROP COLUMN pack_id;
ALTER TABLE pricing_pack DROP COLUMN status, DROP COLUMN hash;
ALTER TABLE users DROP COLUMN email, DROP COLUMN created_at;
ALTER TABLE alerts DROP COLUMN user_id, DROP COLUMN created_at;
ALTER TABLE provider_rights DROP COLUMN attribution, DROP COLUMN updated_at;
ALTER TABLE analytics_events DROP COLUMN id;
ALTER TABLE audit_log DROP COLUMN id;
