-- Operators disable and delete accounts. Disabled: every credential revoked, sign-in refused, until
-- enabled again (NULL: never disabled, or enabled since). Deleted: credentials and links erased, the
-- email replaced by a placeholder and the password hash cleared; irreversible (NULL: not deleted).
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
ALTER TABLE accounts ADD COLUMN deleted_at BIGINT;

-- The operator's account list, newest first.
CREATE INDEX accounts_created ON accounts(created_at);
