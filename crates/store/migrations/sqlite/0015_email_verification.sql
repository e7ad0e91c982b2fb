-- When the person proved they receive mail at the account's address (NULL: not yet, or not since it changed).
ALTER TABLE accounts ADD COLUMN email_verified_at BIGINT;

-- Links sent by email (address verification, password reset): found by the SHA-256 of the token in
-- the link, single use, short-lived; the address the link was sent to is kept with it.
CREATE TABLE email_tokens (
    token_hash    BLOB PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL,
    email         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX email_tokens_account ON email_tokens(account_id, purpose);
CREATE INDEX email_tokens_expiry ON email_tokens(expires_at);
