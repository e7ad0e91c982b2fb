-- Audit rows without what they need not carry: `id` (a UUIDv7 made by the server) had a unique index
-- nothing looks rows up by (about 50 bytes per event). The hash chain is unchanged.
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_id_key;
