-- An account's TOTP authenticator: the secret sealed under the master key (bound to the account),
-- and the last step accepted (a code is accepted only for a later step: no replay in its window).
CREATE TABLE account_totp (
    account_id    TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    secret_sealed BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    last_step     BIGINT NOT NULL
);

-- Its single-use recovery codes, as keyed digests.
CREATE TABLE recovery_codes (
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash     BLOB NOT NULL,
    used_at       BIGINT,
    PRIMARY KEY (account_id, code_hash)
);
