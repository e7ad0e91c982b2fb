-- When an audit row was redacted (its account deleted: the account's email replaced in the row's
-- details and target). The row keeps its hash: the chain still links through it, and verification
-- accepts its changed content only for rows of accounts whose deletion the chain records.
ALTER TABLE audit_events ADD COLUMN redacted_at BIGINT;
